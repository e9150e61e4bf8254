"""Where a stage runs: `runtime.device` resolved against what this machine can really do, or one line saying
why not. A GPU recipe never quietly falls back to the CPU."""

from __future__ import annotations

import logging
import os
import shutil

from qlora_sentiment.core.errors import ConfigError
from qlora_sentiment.problems.model import bad_input

log = logging.getLogger(__name__)


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here (None when it can): no CUDA build of torch, no driver or one too old, no
    visible device."""
    import torch

    if not torch_has_cuda():
        return (f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build "
                "(`make run LOCK=requirements/cuda.lock`, or pip install torch from https://download.pytorch.org/whl/<cuda>)")
    try:
        torch.cuda.init()  # raises with the driver's own words: none found, or too old for this torch's CUDA
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"CUDA cannot start ({first})"
    if torch.cuda.device_count() == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return "no CUDA device is visible" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
    return unsupported_gpu()


def unsupported_gpu() -> str | None:
    """A GPU this torch build has no kernels for (a V100 under the CUDA 13 build: "no kernel image" at the first
    op, after the hub download). A device runs a build's sm_XY code of its own major version and minor <= its own,
    and JIT-compiles compute_XY (PTX) of any lower version."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    arches = torch.cuda.get_arch_list()
    for arch in arches:
        kind, _, number = arch.partition("_")
        built = (int(number[:-1]), int(number[-1])) if number.isdigit() else None
        if built and ((kind == "sm" and built[0] == major and built[1] <= minor)
                      or (kind == "compute" and built <= (major, minor))):
            return None
    built = sorted(int(a[3:]) for a in arches if a.startswith("sm_") and a[3:].isdigit()) or [0]
    oldest = f"{built[0] // 10}.{built[0] % 10}"
    gpu = f"{torch.cuda.get_device_name(0)} (compute capability {major}.{minor})"
    if major * 10 + minor < built[0]:
        return bad_input("gpu-too-old").format(gpu=gpu, torch=torch.__version__, oldest=oldest)
    return (f"{gpu} has no kernels in this torch ({torch.__version__}: {', '.join(arches)}); refresh the locks for a "
            "torch release that supports it (`make lock`)")


def resolve_device(requested: str) -> str:
    """'cuda' or 'cpu' for runtime.device auto | cuda | cpu."""
    if requested == "cpu":
        return "cpu"
    problem = cuda_problem()
    if problem is None:
        return "cuda"
    if requested == "cuda":
        raise ConfigError(f"runtime.device: cuda, but {problem}. This recipe is meant for a GPU; to run it on the "
                          "CPU anyway (very slow for a 7B model) set runtime.device: cpu")
    # auto runs on the CPU and says why: a warning where a GPU is there to be missed (a CUDA build of torch that
    # cannot use it, or an NVIDIA device beside a CPU-only torch), a note otherwise
    if torch_has_cuda() or os.path.exists("/dev/nvidia0"):
        log.warning("runtime.device: auto runs on the CPU: %s", problem)
    else:
        log.info("runtime.device: auto runs on the CPU (no NVIDIA GPU on this machine)")
    return "cpu"


def torch_has_cuda() -> bool:
    import torch

    return torch.version.cuda is not None


CPUINFO = "/proc/cpuinfo"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 dot products (AVX512-BF16, AMX); without them torch emulates


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_bf16_flags() -> list[str]:
    """The bf16 instruction sets this CPU has (measured: bf16 LoRA steps 1.67x faster with them, slower without)."""
    flags = cpu_flags()
    return [f for f in BF16_CPU_FLAGS if f in flags]


def resolve_compute_dtype(requested: str, device: str) -> str:
    """quantization.compute_dtype as it runs: `auto` is bfloat16 where the hardware computes it natively (a CPU
    with AVX512-BF16 or AMX, an Ampere or newer GPU), else float32 on a CPU and float16 on an older GPU."""
    if requested != "auto":
        return requested
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float16"
    return "bfloat16" if cpu_bf16_flags() else "float32"


def check_compute_dtype(device: str, compute_dtype: str) -> None:
    """bf16 needs an Ampere or newer GPU (compute capability 8.0); on older ones float16 is the choice."""
    if device != "cuda" or compute_dtype != "bfloat16":
        return
    import torch

    if not torch.cuda.is_bf16_supported(including_emulation=False):
        major, minor = torch.cuda.get_device_capability()
        raise ConfigError(f"quantization.compute_dtype: bfloat16, but {torch.cuda.get_device_name()} (compute "
                          f"capability {major}.{minor}) has no bf16 support; set quantization.compute_dtype: float16")


def check_c_compiler(device: str) -> None:
    """On CUDA, TRL's loss kernels are Triton kernels compiled at first use, which needs a C compiler; slim
    images without one fail at step 1 with "Failed to find C compiler". Say so before loading a 7B model."""
    if device != "cuda":
        return
    from transformers.utils import is_triton_available

    if not is_triton_available():
        return
    compilers = [os.environ.get("CC"), "cc", "gcc", "clang"]
    if not any(c and shutil.which(c) for c in compilers):
        raise ConfigError("runtime.device: cuda: TRL compiles Triton kernels on the GPU at the first step and "
                          "needs a C compiler, none found (CC, cc, gcc, clang); install one (apt-get install gcc) "
                          "or set CC to its path")
