"""What produced a result: package versions and device, recorded next to the outputs.

Only values that two identical machines share: this file is a git-tracked stage output, so a kernel build
string or a host name would make `dvc.lock` differ on every machine that reproduces the run.
"""

from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "trl", "datasets", "accelerate", "dvc", "dvclive")


def describe_environment() -> dict:
    import torch

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
    }
