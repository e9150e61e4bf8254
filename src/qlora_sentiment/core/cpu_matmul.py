"""runtime.cpu_matmul: which library multiplies float32 matrices on the CPU while a stage trains or scores.

Under runtime.cpu_isa: avx2, MKL runs its vendor-neutral COMPATIBLE branch (core/cpu_isa.py), which has no AVX2
kernels, and matrix products are most of a training step: with them in oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA)
training runs 1.73x the reviews/s (BENCHMARKS.md, `bench/bench.py --speed`).
`onednn` sends aten::mm and aten::addmm of float32 CPU tensors to oneDNN's matmul (torch.ops.mkldnn, the kernels
torch itself uses for bf16 and for compiled graphs), forward and backward alike, because the override sits below
autograd. oneDNN accumulates each output in order along the inner dimension and picks its kernels from the ISA cap,
so the bytes follow the cap and the thread count. `mkl`: torch's own path, unchanged.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

# The one list: config/schema.py builds runtime.cpu_matmul's Literal from it (the params' error names them in order)
CPU_MATMULS = ("onednn", "mkl")


def _linear(a, b, bias=None):
    """a @ b (+ bias) through oneDNN: its 'linear' takes the weight as [out, in], which b.t() is (a view)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise.default(a, b.t(), bias, "none", [], "")


def _float32(*tensors) -> bool:
    import torch

    return all(t.dtype is torch.float32 for t in tensors) and all(t.numel() for t in tensors)


def _mm(a, b):
    import torch

    if _float32(a, b):
        return _linear(a, b)
    # Other dtypes (and empty operands) keep torch's own kernels: bmm is not overridden
    return torch.bmm(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0)


def _addmm(c, a, b, *, beta=1, alpha=1):
    import torch

    if beta == 1 and alpha == 1 and c.dim() == 1 and _float32(c, a, b):
        return _linear(a, b, c)  # Linear with a bias: the bias added per output column, as oneDNN's linear does
    return torch.baddbmm(c.expand(a.shape[0], b.shape[1]).unsqueeze(0), a.unsqueeze(0), b.unsqueeze(0),
                         beta=beta, alpha=alpha).squeeze(0)


@contextlib.contextmanager
def cpu_matmul(kind: str) -> Iterator[None]:
    """Within the block, CPU float32 mm/addmm run in `kind`'s library (see the module's doc); 'mkl' changes nothing.

    The override is torch.library's: a kernel registered for aten::mm/addmm at the CPU key replaces torch's for
    the whole process until the block ends (only CPU tensors are affected; CUDA keeps cuBLAS)."""
    if kind not in CPU_MATMULS:
        raise ValueError(f"cpu_matmul: {kind!r} is not one of {', '.join(CPU_MATMULS)}")
    if kind == "mkl":
        yield
        return
    import torch

    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():  # "overriding a previously registered kernel": that is the point
        warnings.simplefilter("ignore")
        library.impl("mm", _mm, "CPU")
        library.impl("addmm", _addmm, "CPU")
    try:
        yield
    finally:
        library._destroy()  # torch's own kernels again
