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

# Per-run timings would make the logged curves differ between identical runs; the Trainer's train_loss and TRL's
# num_tokens count only the steps since a resume (the record holds the mean of the logged losses instead).
UNSTABLE_LOG_KEYS = ("runtime", "per_second", "total_flos", "train_loss", "num_tokens")


def save_adapter(model, tokenizer, out: Path, record: ModelRecord) -> None:
    model.save_pretrained(out)
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
        for key, value in entry.items():
            if key == "step" or not isinstance(value, (int, float)) or any(k in key for k in UNSTABLE_LOG_KEYS):
                continue
            name = key[5:] if key.startswith("eval_") else key
            live.log_metric(f"{'eval' if key.startswith('eval_') else 'train'}/{name}", value)


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
        if record.train_loss is not None:
            live.log_metric("train/train_loss", record.train_loss)
        for name, value in record.validation.items():
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
