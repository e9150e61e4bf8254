"""Recipes compared on the same prepared data: training minutes vs validation and test accuracy, peak memory.

Every recipe reads one prepared copy of the default data (all ~9,300 train reviews, 600 validation reviews, the
same 1,000 test reviews as the pipeline), trains on the first --train reviews of it (a seeded shuffle), and is
selected on validation; the test accuracy is printed next to it, never used to choose. One recipe per process,
so each peak memory is its own; one training at a time (two would share the 2 cores).

    python bench/recipes.py --name gen-smollm2 --train 3000 -- quantization.compute_dtype=float32
    python bench/recipes.py --name cls-gemma3 --train 3000 -- model.name=gemma3-270m model.head=classifier
    python bench/recipes.py --plot            # bench/recipes.png from bench/recipes.jsonl

Overrides after `--` are Hydra overrides of conf/ (as `dvc exp run -S` takes them). Figures: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "recipes.jsonl"
DATA = ["data.max_train=null", "data.max_validation=600"]  # the test split is the pipeline's own


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def prepared(params) -> dict[str, list[dict]]:
    """The data stage's output for these data params, computed once and cached by their hash."""
    from qlora_sentiment.core.io import read_jsonl, write_jsonl
    from qlora_sentiment.data.prepare import prepare

    key = hashlib.sha256(params.data.model_dump_json().encode()).hexdigest()[:12]
    folder = CACHE / f"data-{key}"
    if not (folder / "test.jsonl").is_file():
        records, _ = prepare(params.data, params.seed)
        folder.mkdir(parents=True, exist_ok=True)
        for split, rows in records.items():
            write_jsonl(folder / f"{split}.jsonl", rows)
    return {split: read_jsonl(folder / f"{split}.jsonl") for split in ("train", "validation", "test")}


def base(params):
    from qlora_sentiment.model.base import load_ref, materialize

    folder = CACHE / f"base-{params.model.name.replace('/', '--')}"
    if not folder.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)  # a fresh clone has no cache yet
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            materialize(params.model, Path(tmp))
            Path(tmp).rename(folder)
            Path(tmp).mkdir()  # TemporaryDirectory removes its own folder on exit
    return load_ref(folder)


def run(name: str, n_train: int, overrides: list[str]) -> dict:
    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.core.device import cpu_bf16_flags
    from qlora_sentiment.core.runtime import configure_environment, setup_stage

    configure_environment()
    params = params_from_dict(compose(ROOT / "conf", [*DATA, *overrides]))
    device, params = setup_stage(params)
    import torch

    from qlora_sentiment.evaluation.metrics import classification_metrics
    from qlora_sentiment.model.scoring import LabelScorer
    from qlora_sentiment.training.run import train

    CACHE.mkdir(parents=True, exist_ok=True)
    data = prepared(params)
    ref = base(params)
    rows = data["train"][:n_train]
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        result = train(params, ref, rows, data["validation"], Path(scratch))
        seconds = time.perf_counter() - start  # training plus the validation scoring inside train()
    scorer = LabelScorer(result.model, result.tokenizer, params.model.head, params.data.labels,
                         params.prompt.template, params.train.max_length, params.prompt.chat_template)
    start = time.perf_counter()
    test = data["test"]
    proba = scorer.predict_proba([r["text"] for r in test], batch_size=params.eval.batch_size)
    test_seconds = time.perf_counter() - start
    scores = classification_metrics([r["label"] for r in test], proba, params.data.labels)
    train_steps = [e for e in result.log_history if "train_runtime" in e]
    return {
        "name": name, "overrides": overrides, "train_reviews": len(rows), "epochs": params.train.epochs,
        "model": params.model.name, "head": params.model.head, "compute_dtype": params.quantization.compute_dtype,
        "train_seconds": round(train_steps[0]["train_runtime"], 1) if train_steps else None,
        "train_and_validation_seconds": round(seconds, 1),
        "reviews_per_s": round(len(rows) * params.train.epochs / train_steps[0]["train_runtime"], 2),
        "validation_accuracy": round(result.record.validation["accuracy"], 4),
        "validation_macro_f1": round(result.record.validation["macro_f1"], 4),
        "validation_reviews": len(data["validation"]),
        "test_accuracy": round(scores["accuracy"], 4), "test_macro_f1": round(scores["macro"]["f1"], 4),
        "test_reviews": len(test), "test_texts_per_s": round(len(test) / test_seconds, 2),
        "peak_rss_mb": round(_peak_rss_mb()), "device": device, "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_flags": cpu_bf16_flags(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    for ax, key, title in ((axes[0], "validation_accuracy", "validation (600, selects)"),
                           (axes[1], "test_accuracy", "test (1,000, reported)")):
        for r in rows:
            ax.scatter(r["train_seconds"] / 60, 100 * r[key], s=30)
            ax.annotate(f"{r['name']} ({r['train_reviews']})", (r["train_seconds"] / 60, 100 * r[key]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(87, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, max(r["train_seconds"] for r in rows) / 60 + 4)  # room for the labels
        ax.set_xlabel("training minutes (2 CPU cores)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy %")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", help="a label for the recipe")
    parser.add_argument("--train", type=int, default=3000, help="train reviews (the first N of the prepared split)")
    parser.add_argument("--plot", action="store_true", help="draw bench/recipes.png from bench/recipes.jsonl")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/, after --")
    args = parser.parse_args()
    if args.plot:
        plot(ROOT / "bench" / "recipes.png")
        return 0
    if not args.name:
        parser.error("--name is required for a run")
    result = run(args.name, args.train, args.overrides)
    with open(RESULTS, "a", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
