"""Score a split (fine-tuned or untuned baseline) and turn the two sets of predictions into everything a
reviewer reads: metrics with intervals, the paired comparison, calibration, curves and error analysis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qlora_sentiment.evaluation.curves import pr_rows, roc_rows
from qlora_sentiment.evaluation.error_analysis import aspect_error_rates, bucket_error_rates, confident_mistakes
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.evaluation.metrics import (bootstrap_intervals, calibration_metrics, classification_metrics,
                                                confusion_counts, label_indices, reliability_bins)
from qlora_sentiment.evaluation.report import before_after_ids, summary_markdown
from qlora_sentiment.model.scoring import LabelScorer
from qlora_sentiment.evaluation.significance import compare


def predict_split(scorer: LabelScorer, rows: list[dict], batch_size: int) -> list[dict]:
    """One prediction row per example: id, text, true label, predicted label, per-label probabilities."""
    labels = scorer.labels
    unknown = sorted({r["label"] for r in rows} - set(labels))
    if unknown:
        raise ModelError(f"test labels {unknown} are not among the model's labels {labels}; retrain on this data")
    proba = scorer.score_rows(rows, batch_size=batch_size)
    # aspect examples keep their aspect, sentence and how often train had the aspect (error analysis)
    extra = ("aspect", "group", "aspect_train_count") if rows and "aspect" in rows[0] else ()
    return [
        {"id": r["id"], "text": r["text"], **{k: r[k] for k in extra if k in r}, "label": r["label"],
         "predicted": labels[int(np.argmax(p))],
         "probabilities": {lab: round(float(x), 6) for lab, x in zip(labels, p)}}
        for r, p in zip(rows, proba)
    ]


def _arrays(predictions: list[dict], labels: list[str]):
    proba = np.array([[p["probabilities"][lab] for lab in labels] for p in predictions], dtype=np.float64)
    proba /= proba.sum(axis=1, keepdims=True)  # undo the rounding to 6 decimals in the files
    return label_indices([p["label"] for p in predictions], labels), proba


def summarize(predictions: list[dict], labels: list[str], seed: int) -> dict:
    """Classification metrics, calibration and bootstrap intervals of one set of predictions."""
    truth, proba = _arrays(predictions, labels)
    out = classification_metrics([p["label"] for p in predictions], proba, labels)
    out["calibration"] = calibration_metrics(truth, proba)
    out["ci95"] = bootstrap_intervals(truth, proba.argmax(axis=1), len(labels), seed)
    return out


def reliability_rows(predictions: list[dict], labels: list[str]) -> list[dict]:
    return reliability_bins(*_arrays(predictions, labels))


@dataclass
class Analysis:
    metrics: dict                       # metrics.json: fine-tuned metrics + `baseline` comparison
    confusion_rows: list[dict]          # {actual, predicted} for DVC's confusion template
    counts: np.ndarray
    roc: dict[str, list[dict]]          # label -> rows {fpr, tpr}
    pr: dict[str, list[dict]]           # label -> rows {recall, precision}
    reliability: list[dict]             # fine-tuned reliability bins
    baseline_reliability: list[dict]
    error_analysis: dict
    mistakes: list[dict]
    markdown: str


def analyze(tuned: list[dict], baseline: list[dict], labels: list[str], seed: int) -> Analysis:
    """Everything the evaluate stage writes, from the fine-tuned and baseline predictions of the same split."""
    if [p["id"] for p in tuned] != [p["id"] for p in baseline]:
        raise ModelError("baseline predictions are for other test examples than the fine-tuned ones; "
                         "run dvc repro so both score the same test split")
    metrics = summarize(tuned, labels, seed)
    base_metrics = summarize(baseline, labels, seed)
    truth = [p["label"] for p in tuned]
    metrics["baseline"] = compare(metrics, base_metrics, [p["predicted"] for p in tuned],
                                  [p["predicted"] for p in baseline], truth)
    metrics["baseline"]["calibration"] = base_metrics["calibration"]
    t_idx, t_proba = _arrays(tuned, labels)
    errors = bucket_error_rates(tuned)
    if tuned and "aspect" in tuned[0]:
        errors["aspects"] = aspect_error_rates(tuned)
    mistakes = confident_mistakes(tuned)
    by_id = {t["id"]: (t, b) for t, b in zip(tuned, baseline)}
    examples = []
    for i in before_after_ids(list(by_id), seed):
        t, b = by_id[i]
        examples.append({"id": i, "text": t["text"], **({"aspect": t["aspect"]} if "aspect" in t else {}),
                         "label": t["label"],
                         "finetuned": t["predicted"], "finetuned_confidence": t["probabilities"][t["predicted"]],
                         "baseline": b["predicted"], "baseline_confidence": b["probabilities"][b["predicted"]]})
    return Analysis(
        metrics=metrics,
        confusion_rows=[{"actual": t, "predicted": p["predicted"]} for t, p in zip(truth, tuned)],
        counts=confusion_counts(truth, [p["predicted"] for p in tuned], labels),
        roc=roc_rows(t_idx, t_proba, labels),
        pr=pr_rows(t_idx, t_proba, labels),
        reliability=reliability_bins(t_idx, t_proba),
        baseline_reliability=reliability_rows(baseline, labels),
        error_analysis=errors,
        mistakes=mistakes,
        markdown=summary_markdown(metrics, base_metrics, errors, mistakes, examples),
    )
