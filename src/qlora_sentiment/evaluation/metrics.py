"""Classification metrics from true labels and per-label probabilities (scikit-learn does the arithmetic; the
bootstrap repeats its macro-F1 formula over all resamples at once, macro_f1_rows)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: list[str], proba: np.ndarray, labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score

    truth = label_indices(y_true, labels)
    pred = proba.argmax(axis=1)
    out = {"n": int(len(truth)), "accuracy": float(accuracy_score(truth, pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(truth, pred, labels=range(len(labels)), average=average,
                                                     zero_division=0)
        out[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, support = precision_recall_fscore_support(truth, pred, labels=range(len(labels)), zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
        for i, name in enumerate(labels)
    }
    present = np.unique(truth)
    if len(present) == len(labels):  # ROC-AUC is undefined when a class is absent from the test split
        if len(labels) == 2:
            out["roc_auc"] = float(roc_auc_score(truth, proba[:, 1]))
        else:
            out["roc_auc"] = float(roc_auc_score(truth, proba, multi_class="ovr", average="macro"))
    out["log_loss"] = float(log_loss(truth, proba, labels=range(len(labels))))
    return out


def confusion_counts(y_true: list[str], y_pred: list[str], labels: list[str]) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=labels)


def label_indices(y: list[str], labels: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    return np.array([index[v] for v in y], dtype=int)


def reliability_bins(truth: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Top-label confidence in equal-width bins: the rows behind the reliability diagram and the ECE."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == truth
    # Bin edges (lo, hi]; the first bin also takes confidence == 0 (impossible above 1/k anyway).
    which = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        members = which == b
        if members.any():
            rows.append({"bin": round((b + 0.5) / n_bins, 4), "confidence": float(confidence[members].mean()),
                         "accuracy": float(correct[members].mean()), "count": int(members.sum())})
    return rows


def calibration_metrics(truth: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict:
    """Expected calibration error (top label, equal-width bins) and the Brier score (scikit-learn's)."""
    from sklearn.metrics import brier_score_loss

    bins = reliability_bins(truth, proba, n_bins)
    n = len(truth)
    ece = sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in bins)
    brier = brier_score_loss(truth, proba, labels=list(range(proba.shape[1])))
    return {"ece": float(ece), "brier": float(brier), "bins": n_bins}


def macro_f1_rows(truth: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Macro F1 of each row of label indices (one bootstrap resample a row), all rows at once: scikit-learn's
    `f1_score(average="macro", zero_division=0)` with its own arithmetic (per label 2·tp / (true + predicted) in
    float64, 0 where a label is neither, then the mean), so every value has the same bits. A Python loop of f1_score
    calls spent ~2.3 s of each 1,000-resample interval in argument checks."""
    per_label = np.zeros((truth.shape[0], n_labels))
    for k in range(n_labels):
        is_true, is_pred = truth == k, pred == k
        denominator = (is_true.sum(axis=1) + is_pred.sum(axis=1)).astype(np.float64)
        np.divide(2.0 * (is_true & is_pred).sum(axis=1), denominator, out=per_label[:, k], where=denominator > 0)
    return per_label.mean(axis=1)


def bootstrap_intervals(truth: np.ndarray, pred: np.ndarray, n_labels: int, seed: int,
                        n_resamples: int = 1000, level: float = 0.95) -> dict:
    """Percentile bootstrap intervals for accuracy and macro F1, resampling test examples with a fixed seed."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(truth), size=(n_resamples, len(truth)))
    truth_rows, pred_rows = truth[draws], pred[draws]
    accuracy = (truth_rows == pred_rows).mean(axis=1)
    macro_f1 = macro_f1_rows(truth_rows, pred_rows, n_labels)
    tail = (1 - level) / 2 * 100
    # {low, high} objects rather than lists, so `dvc metrics show/diff` lists each bound as a number.
    return {
        name: {"low": float(np.percentile(values, tail)), "high": float(np.percentile(values, 100 - tail))}
        for name, values in (("accuracy", accuracy), ("macro_f1", macro_f1))
    } | {"resamples": n_resamples}
