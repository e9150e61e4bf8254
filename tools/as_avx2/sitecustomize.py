"""Run Python as if this machine were an AVX2-only x86-64 CPU without avx512_bf16 (the slower machines of our
kind): `PYTHONPATH=tools/as_avx2 dvc repro` (or `make run`) on an AVX-512 machine. The cross-ISA check of
docs/reproducibility.md and tests/test_cpu_isa.py: outputs made this way must equal the ones made natively.

What it caps, before any library loads: ATen's and oneDNN's kernels, MKL's code path, NumPy's dispatch, and
bitsandbytes' own probe of the CPU for avx512_bf16 (it reads the CPU directly, so no variable reaches it).
"""

import importlib.abc
import importlib.machinery
import os
import sys

os.environ.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_CBWR="COMPATIBLE")  # = the pin
os.environ["NPY_DISABLE_CPU_FEATURES"] = "X86_V4 AVX512_ICL AVX512_SPR"
os.environ["QLORA_AS_AVX2"] = "1"  # visible to children and to the test that checks the shim ran


class _NoBf16Probe(importlib.abc.MetaPathFinder):
    """After bitsandbytes.functional and bitsandbytes.nn.modules load, their has_avx512bf16() answers False."""

    TARGETS = ("bitsandbytes.functional", "bitsandbytes.nn.modules", "bitsandbytes.backends.cpu.ops")

    def find_spec(self, name, path=None, target=None):
        if name not in self.TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            if hasattr(module, "has_avx512bf16"):
                module.has_avx512bf16 = lambda: False

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _NoBf16Probe())
