"""What produced a result: package versions and device, recorded next to the outputs.

Only values that two identical machines share: this file is a git-tracked stage output, so a kernel build
string or a host name would make `dvc.lock` differ on every machine that reproduces the run.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "trl", "datasets", "accelerate", "dvc", "dvclive")


def describe_environment(compute_dtype: str | None = None, auto_dtype: bool = False,
                         cpu_matmul: str | None = None) -> dict:
    """compute_dtype: quantization.compute_dtype as it ran; auto_dtype: it was `auto`, resolved from the CPU's bf16
    flags, which are then recorded too (otherwise they are machine facts that changed nothing, and would make this
    git-tracked file differ between machines of one kind); cpu_matmul: runtime.cpu_matmul of a CPU run."""
    import torch

    from qlora_sentiment.core.cpu_isa import pinned_isa
    from qlora_sentiment.core.device import cpu_bf16_flags

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {
        # major.minor: what the lock is resolved for (a patch release changes no wheel and no result)
        "python": "%d.%d" % sys.version_info[:2],
        "system": f"{platform.system()} {platform.machine()}",  # "Linux x86_64", not the kernel build
        "packages": versions,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch_threads": torch.get_num_threads(),
        # the kernels ATen ran: AVX2 on every x86-64 machine under runtime.cpu_isa: avx2 (core/cpu_isa.py)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_isa": pinned_isa() or "native",
        **({"cpu_bf16_flags": cpu_bf16_flags()} if auto_dtype and not cuda else {}),
        **({"compute_dtype": compute_dtype} if compute_dtype is not None else {}),
        **({"cpu_matmul": cpu_matmul} if cpu_matmul is not None and not cuda else {}),
    }
