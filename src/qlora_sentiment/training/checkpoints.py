"""Resume after a crash: Trainer checkpoints in a scratch folder, reused only by the same run.

The train stage's folder of checkpoints is not a DVC output, so DVC never deletes it between attempts. A run
writes `run.json` there (a fingerprint of everything that determines training) before its first step; a later
attempt resumes from the newest *complete* checkpoint when the fingerprint matches, and starts clean otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from qlora_sentiment.core.io import write_json

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
# The Trainer writes trainer_state.json after the weights, optimizer, scheduler and RNG state: a checkpoint
# without a readable one was cut short.
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def fingerprint(training_params: dict, base: dict, train_rows: list[dict], val_rows: list[dict]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"params": training_params, "base": base}, sort_keys=True).encode())
    for rows in (train_rows, val_rows):
        digest.update(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def _read_json(path: Path) -> dict | None:
    """The file's object, or None when it is missing, cut short or not JSON (a kill can land mid-write)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def is_complete(checkpoint: Path) -> bool:
    if not all((checkpoint / name).is_file() for name in REQUIRED):
        return False
    if not any(checkpoint.glob("*.safetensors")):
        return False
    return _read_json(checkpoint / "trainer_state.json") is not None


def _step(path: Path) -> int:
    try:
        return int(path.name.split("-")[-1])
    except ValueError:
        return -1


def resume_point(folder: Path, run_id: str, tidy: bool = True) -> Path | None:
    """The checkpoint to resume from, or None after making `folder` a clean start for this run.

    tidy=False only reads (the other processes of a data-parallel run, after rank 0 has tidied)."""
    folder = Path(folder)
    record = folder / RUN_FILE
    same_run = (_read_json(record) or {}).get("fingerprint") == run_id
    if same_run:
        found = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir()), key=_step, reverse=True)
        for checkpoint in found:
            if is_complete(checkpoint):
                for later in found[:found.index(checkpoint)] if tidy else []:
                    log.warning("ignoring incomplete checkpoint %s (the run was interrupted while saving it)", later)
                    shutil.rmtree(later, ignore_errors=True)
                log.warning("resuming training from %s (a previous attempt was interrupted)", checkpoint)
                return checkpoint
    elif folder.exists() and tidy:
        log.info("checkpoints in %s belong to another run; starting afresh", folder)
    if not tidy:
        return None
    # emptied, not removed: the folder may be a mounted bucket or a link to one (cloud/sky-train.yaml)
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    write_json(record, {"fingerprint": run_id})
    return None
