"""What produced a result: package versions and device, recorded next to the outputs.

Only values that two identical machines share: this file is a git-tracked stage output, so a kernel build
string or a host name would make `dvc.lock` differ on every machine that reproduces the run.
"""

from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "trl", "datasets", "accelerate", "dvc", "dvclive")


def describe_environment(compute_dtype: str | None = None) -> dict:
    """compute_dtype: quantization.compute_dtype as it ran (`auto` resolved), with the CPU's bf16 flags behind it."""
    import torch

    from qlora_sentiment.core.device import cpu_bf16_flags

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",  # "Linux x86_64", not the kernel build
        "packages": versions,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch_threads": torch.get_num_threads(),
        # what decides `auto` and the speed of bf16 on a CPU: machines of one kind differ here
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_flags": cpu_bf16_flags(),
        **({"compute_dtype": compute_dtype} if compute_dtype is not None else {}),
    }
