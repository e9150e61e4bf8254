"""Fine-tuned vs baseline on the same test examples: paired counts, McNemar's exact test, metric deltas."""

from __future__ import annotations

import numpy as np


def mcnemar_exact(tuned_correct: np.ndarray, base_correct: np.ndarray) -> dict:
    """McNemar's exact (binomial) test on the discordant pairs, computed by statsmodels."""
    from statsmodels.stats.contingency_tables import mcnemar

    tuned_correct, base_correct = np.asarray(tuned_correct, bool), np.asarray(base_correct, bool)
    table = np.array([
        [np.sum(tuned_correct & base_correct), np.sum(tuned_correct & ~base_correct)],
        [np.sum(~tuned_correct & base_correct), np.sum(~tuned_correct & ~base_correct)],
    ])
    result = mcnemar(table, exact=True)
    return {
        "test": "mcnemar_exact",
        "both_correct": int(table[0, 0]), "only_finetuned_correct": int(table[0, 1]),
        "only_baseline_correct": int(table[1, 0]), "both_wrong": int(table[1, 1]),
        "statistic": float(result.statistic), "p_value": float(result.pvalue),
    }


def compare(tuned: dict, baseline: dict, tuned_pred: list[str], base_pred: list[str], truth: list[str],
            alpha: float = 0.05) -> dict:
    """The `baseline` section of metrics.json: baseline figures, deltas and the paired test."""
    if len(tuned_pred) != len(base_pred) or len(truth) != len(base_pred):
        raise ValueError("baseline and fine-tuned predictions cover different test examples")
    truth_a = np.asarray(truth)
    test = mcnemar_exact(np.asarray(tuned_pred) == truth_a, np.asarray(base_pred) == truth_a)
    test["significant"] = bool(test["p_value"] < alpha)
    test["alpha"] = alpha
    headline = {
        "accuracy": (tuned["accuracy"], baseline["accuracy"]),
        "macro_f1": (tuned["macro"]["f1"], baseline["macro"]["f1"]),
    }
    for key in ("roc_auc", "log_loss"):
        if key in tuned and key in baseline:
            headline[key] = (tuned[key], baseline[key])
    return {
        "metrics": {k: b for k, (_, b) in headline.items()},
        "delta": {k: t - b for k, (t, b) in headline.items()},
        "mcnemar": test,
    }
