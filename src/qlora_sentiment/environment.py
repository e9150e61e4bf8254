"""What produced a result: package versions and device, recorded next to the outputs."""

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
        "platform": platform.platform(terse=True),
        "packages": versions,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch_threads": torch.get_num_threads(),
    }
