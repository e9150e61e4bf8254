"""Local inputs live where dvc.yaml tracks them, so DVC re-runs a stage when one of its files changes.

`prepare` depends on the folder data/raw/ and `base_model` on models/local/: a user's own data file or model
folder named in params is accepted only inside them (a DVC user adds large ones with `dvc add`).
"""

from __future__ import annotations

from pathlib import Path

from qlora_sentiment.core.errors import ConfigError

DATA_FOLDER = "data/raw"
MODEL_FOLDER = "models/local"


def require_tracked(path: str, folder: str, key: str) -> None:
    """ConfigError unless `path` lies inside `folder` (both relative to the project root, the stage's cwd)."""
    if Path(path).expanduser().resolve().is_relative_to(Path(folder).resolve()):
        return
    raise ConfigError(
        f"{key}: {path} is outside {folder}/, the folder dvc.yaml tracks for this stage, so DVC would not notice "
        f"when it changes; move or copy it into {folder}/ (for a large one: dvc add {folder}/<name>) and set "
        f"{key} to that path"
    )
