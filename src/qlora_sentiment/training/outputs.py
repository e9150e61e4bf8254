"""What the train stage writes: the adapter folder and the training curves, each published whole.

The curves are written from the Trainer's log history after training (not step by step during it), into a
scratch folder that replaces the outputs at the end: a run killed at any point leaves the previous outputs or
none (DVC removes a stage's outputs before running it), never the first steps of a new run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from qlora_sentiment.model.record import ModelRecord, write_record
from qlora_sentiment.model.tokenizer import save_tokenizer
from qlora_sentiment.training.run import CURVE_ACCURACY, CURVE_LOSS

# The curves `dvc plots show` draws, only those that inform: the training loss at every logged step, and the
# validation subset's loss (cross-entropy over the labels: the Trainer's own loss for the classifier head) and
# accuracy at train.validation_points steps (training/run.py). Not drawn: the epoch and learning-rate ramps (the
# params say them), grad norms, one-point panels (the mean train_loss is in the summary, the whole validation split's
# loss in the adapter's record), per-run timings (they differ between identical runs: timing.json).
CURVES = {"loss": "train/loss", CURVE_LOSS: "eval/loss", CURVE_ACCURACY: "eval/accuracy"}


def save_adapter(model, tokenizer, out: Path, record: ModelRecord, state_dict: dict | None = None) -> None:
    """state_dict: the gathered weights of a model FSDP sharded (PEFT takes the adapter's from it)."""
    model.save_pretrained(out, state_dict=state_dict)
    save_tokenizer(tokenizer, out)
    # PEFT writes target_modules from a set, in hash-seed order: sort it so identical runs give identical files.
    config_file = out / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_record(out, record)


def _log_entries(live, history: list[dict]) -> None:
    for entry in history:
        if "step" not in entry:
            continue
        live.step = entry["step"]
        # In CURVES' order, not the entry's: a resumed run replays entries from a checkpoint's trainer_state.json,
        # which the Trainer saves with sorted keys, and metrics.json's key order is its bytes (and dvc.lock's hash).
        for key, name in CURVES.items():
            if isinstance(entry.get(key), (int, float)):
                live.log_metric(name, entry[key])


def write_curves(live_dir: Path, history: list[dict], record: ModelRecord) -> None:
    """DVCLive files (`metrics.json`, `plots/metrics/**.tsv`) in `live_dir`, replaced whole; the Live object
    never edits dvc.yaml or commits an experiment."""
    from dvclive import Live

    live_dir = Path(live_dir)
    live_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=live_dir.parent, prefix=f".{live_dir.name}."))
    try:
        live = Live(str(scratch), dvcyaml=False, save_dvc_exp=False, report=None)
        _log_entries(live, history)
        # single figures: in metrics.json (`dvc metrics show/diff`), not drawn as one-point plots
        if record.train_loss is not None:
            live.log_metric("train/train_loss", record.train_loss, plot=False)  # mean of the logged losses
        for name, value in record.validation.items():  # the whole validation split, scored once at the end
            live.log_metric(f"validation/{name}", value, plot=False)
        live.make_summary()
        live.end()
        # the curves first, the summary last: metrics.json present means the curves beside it are complete
        shutil.rmtree(live_dir / "plots", ignore_errors=True)
        if (scratch / "plots").exists():
            os.replace(scratch / "plots", live_dir / "plots")
        os.replace(scratch / "metrics.json", live_dir / "metrics.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# Beside the curves, ignored by git and declared by no stage: training time changes every run, so in a tracked output
# it would dirty `git status` and dvc.lock after every identical `dvc repro`. `qlora-sentiment summary` reads it.
TIMING_FILE = "timing.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def adapter_digest(adapter_dir: Path) -> str | None:
    """sha256 of the adapter's weights: ties timing.json to the adapter it timed (a DVC cache restore brings back
    another adapter and leaves the old timing.json)."""
    import hashlib

    weights = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_timing(path: Path, adapter_dir: Path, history: list[dict], seconds: dict, stage_seconds: float) -> dict:
    """metrics/train/timing.json: the Trainer's own training time and reviews/s (the steps run by this process when
    it resumed), the validation curve's share, and the whole stage's wall time."""
    final = next((e for e in reversed(history) if "train_runtime" in e), {})
    timing = {
        "adapter_sha256": adapter_digest(adapter_dir),
        "training_seconds": final.get("train_runtime"),
        "reviews_per_second": final.get("train_samples_per_second"),
        "validation_curve_seconds": seconds.get("validation_curve"),
        "stage_seconds": round(stage_seconds, 1),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timing, indent=2) + "\n")
    return timing
