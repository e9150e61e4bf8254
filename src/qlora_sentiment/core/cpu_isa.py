"""The CPU instruction set the math libraries may use (runtime.cpu_isa): one set for every x86-64 machine, so a
stage writes the same bytes on an AVX-512 machine as on an AVX2-only one, on Intel as on AMD.

Measured on an AMD EPYC with AVX-512 (torch 2.13 CPU, docs/reproducibility.md): ATen's vectorised kernels
(softmax, reductions) and oneDNN's (gelu) round differently at AVX-512 than at AVX2, and bitsandbytes swaps its
4-bit matmul for a bf16 kernel in eval mode wherever the CPU has avx512_bf16. Capped at AVX2, and with that
kernel off (model/loading.py), the tiny model trains to the same adapter bytes under either ISA.
"""

from __future__ import annotations

import os
import sys

from qlora_sentiment.core.errors import ConfigError

# Read by the libraries when they load: ATen picks its kernels once (ATEN_CPU_CAPABILITY), oneDNN caps its JIT
# (ONEDNN_MAX_CPU_ISA), MKL runs its vendor-neutral code path with conditional numerical reproducibility
# (MKL_CBWR=COMPATIBLE). MKL's AVX2 branch exists on Intel CPUs only: on AMD, MKL_CBWR=AVX2 silently falls back to
# MKL's own dispatch, and an Intel Xeon's sgemm then differs from an AMD EPYC's (measured: docs/reproducibility.md).
PINS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
}
_pinned: str | None = None  # the ISA this process pinned, None when it runs natively


def pin_cpu_isa(isa: str, flags: set[str] | None = None) -> None:
    """Before torch is imported: cap the math libraries at `isa` ('native': no cap). One line if impossible."""
    global _pinned
    if isa == "native":
        return
    if flags is None:
        from qlora_sentiment.core.device import cpu_flags

        flags = cpu_flags()
    if isa not in flags:
        vector = " ".join(sorted(f for f in flags if f.startswith(("avx", "sse", "asimd")))) or "none found"
        raise ConfigError(f"runtime.cpu_isa: {isa}, but this CPU has no {isa.upper()} (its vector flags: {vector}); "
                          "set runtime.cpu_isa: native (results then differ from dvc.lock)")
    if "torch" in sys.modules and _pinned != isa:
        import torch

        # The Python API or a test imported torch first: ATen has chosen its kernels already; say so, don't lie.
        if torch.backends.cpu.get_cpu_capability().lower() != isa:
            raise ConfigError(f"runtime.cpu_isa: {isa}, but torch was imported before the stage could pin it (it "
                              f"runs {torch.backends.cpu.get_cpu_capability()}); set ATEN_CPU_CAPABILITY={isa} "
                              "ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=COMPATIBLE before importing torch")
    os.environ.update(PINS[isa])
    _pinned = isa


def pinned_isa() -> str | None:
    """The ISA pinned in this process (None: native kernels)."""
    return _pinned
