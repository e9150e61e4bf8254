"""`qlora-sentiment summary`: what the last `dvc repro` produced, in a dozen lines (the end of `make run`).

Reads only files: metrics/metrics.json (test metrics, bootstrap intervals, baseline and McNemar), the train
stage's metrics/train/environment.json (compute dtype, CPU instruction set) and metrics/train/timing.json
(training time; git-ignored and declared by no stage, since it changes every run), and the adapter's record.
"""

from __future__ import annotations

import json
from pathlib import Path

from qlora_sentiment.core.errors import QloraError
from qlora_sentiment.core.io import read_json
from qlora_sentiment.problems.compare import bad_input

METRICS = Path("metrics/metrics.json")
ENVIRONMENT = Path("metrics/train/environment.json")
TIMING = Path("metrics/train/timing.json")
ADAPTER = Path("models/adapter")
WIDTH = 100


def _read(path: Path, required: bool = True) -> dict | None:
    if not path.is_file():
        if not required:
            return None
        raise QloraError(bad_input("summary-before-run").format(path=path))
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QloraError(f"{path}: not valid JSON ({exc}); run `dvc repro` to write it again") from None


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _interval(ci: dict | None, scale: float = 1, digits: int = 3, unit: str = "") -> str:
    return f"(95 % CI {scale * ci['low']:.{digits}f}–{scale * ci['high']:.{digits}f}{unit})" if ci else ""


def _significance(mcnemar: dict) -> str:
    p = f"McNemar p = {mcnemar['p_value']:.2g}"
    if not mcnemar.get("significant"):
        return f"{p}: no significant difference from the baseline (alpha {mcnemar.get('alpha', 0.05)})"
    better = mcnemar.get("only_finetuned_correct", 0) >= mcnemar.get("only_baseline_correct", 0)
    return f"{p}: significantly {'better' if better else 'worse'} than the baseline"


def _training(timing: dict | None, adapter_dir: Path) -> str:
    from qlora_sentiment.training.outputs import adapter_digest

    if timing is None:
        return (f"not measured here: no {TIMING} (git-ignored; the train stage writes it when it runs, "
                "not when DVC restores its outputs from the cache)")
    digest = adapter_digest(adapter_dir)
    if digest is not None and timing.get("adapter_sha256") != digest:
        return (f"not measured for this adapter: {TIMING} is from an earlier train run (this adapter came "
                "from the DVC cache)")
    seconds, speed = timing.get("training_seconds"), timing.get("reviews_per_second")
    if seconds is None:
        return f"not recorded in {TIMING}"
    line = f"{seconds:,.0f} s" + (f", {speed:.1f} reviews/s" if speed else "")
    curve = timing.get("validation_curve_seconds")
    return line + (f" (validation curve: {curve:,.0f} s of it)" if curve else "")


def _compute(environment: dict) -> str:
    dtype = environment.get("compute_dtype", "?")
    device = environment.get("device", "?")
    if device != "cpu":
        return f"{dtype} on {device}"
    isa = environment.get("cpu_capability", "?")
    pinned = environment.get("cpu_isa")
    threads = environment.get("torch_threads")
    matmul = environment.get("cpu_matmul")
    return (f"{dtype} on the CPU, {isa} kernels" + (f" (runtime.cpu_isa: {pinned})" if pinned else "")
            + (f", {matmul} matmul" if matmul else "") + (f", {threads} torch threads" if threads else ""))


def summary_lines(root: Path = Path(".")) -> list[str]:
    """The summary, each line at most WIDTH columns; a missing metrics file is a QloraError naming it."""
    metrics = _read(root / METRICS)
    environment = _read(root / ENVIRONMENT)
    timing = _read(root / TIMING, required=False)
    record = _read(root / ADAPTER / "qlora_sentiment.json", required=False) or {}
    ci = metrics.get("ci95", {})
    base = metrics.get("baseline", {})
    model = record.get("base_model", {}).get("name")
    head = record.get("head")
    title = f"{model}, {head} head" if model else "the fine-tuned model"
    lines = [f"Summary of the last `dvc repro`: {title}, test split of {metrics.get('n', '?'):,} reviews"]
    lines.append(f"  accuracy   {_percent(metrics['accuracy']):<8} {_interval(ci.get('accuracy'), 100, 1, ' %')}")
    lines.append(f"  macro F1   {metrics['macro']['f1']:<8.3f} {_interval(ci.get('macro_f1'))}")
    if base:
        b = base.get("metrics", {})
        delta = base.get("delta", {}).get("accuracy")
        lines.append(f"  baseline   {_percent(b['accuracy'])} accuracy, macro F1 {b.get('macro_f1', float('nan')):.3f} "
                     "(the untuned base)" + (f"; fine-tuned {100 * delta:+.1f} points" if delta is not None else ""))
        if "mcnemar" in base:
            lines.append(f"             {_significance(base['mcnemar'])}")
    lines.append(f"  training   {_training(timing, root / ADAPTER)}")
    lines.append(f"  compute    {_compute(environment)}")
    lines += [
        "Next: metrics/evaluation.md (baseline vs fine-tuned, mistakes, calibration, examples);",
        "      `dvc plots show` (training curves, confusion, ROC: an HTML page); docs/results.md;",
        "      `qlora-sentiment predict \"a review\"` to label your own texts.",
    ]
    return [wrapped for line in lines for wrapped in _fit(line)]


def _fit(line: str) -> list[str]:
    """A line longer than WIDTH continues below, indented under its value."""
    import textwrap

    return textwrap.wrap(line, WIDTH, subsequent_indent=" " * 13, break_on_hyphens=False) or [""]
