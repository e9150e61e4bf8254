"""Rows behind the ROC and precision-recall plots: one-vs-rest per label (the positive label only when binary)."""

from __future__ import annotations

import numpy as np


def curve_labels(labels: list[str]) -> list[int]:
    # Binary: the second label's curve is the whole story (the first one's is its mirror image).
    return [len(labels) - 1] if len(labels) == 2 else list(range(len(labels)))


def _rows(x_name: str, x: np.ndarray, y_name: str, y: np.ndarray) -> list[dict]:
    return [{x_name: round(float(a), 6), y_name: round(float(b), 6)} for a, b in zip(x, y)]


def roc_rows(truth: np.ndarray, proba: np.ndarray, labels: list[str]) -> dict[str, list[dict]]:
    from sklearn.metrics import roc_curve

    out = {}
    for k in curve_labels(labels):
        if (truth == k).any() and (truth != k).any():
            fpr, tpr, _ = roc_curve(truth == k, proba[:, k])
            out[labels[k]] = _rows("fpr", fpr, "tpr", tpr)
    return out


def pr_rows(truth: np.ndarray, proba: np.ndarray, labels: list[str]) -> dict[str, list[dict]]:
    from sklearn.metrics import precision_recall_curve

    out = {}
    for k in curve_labels(labels):
        if (truth == k).any():
            precision, recall, _ = precision_recall_curve(truth == k, proba[:, k])
            out[labels[k]] = _rows("recall", recall[::-1], "precision", precision[::-1])
    return out


def areas(curves: dict[str, list[dict]], x: str, y: str) -> dict[str, float]:
    """Trapezoid area under each curve (for ROC rows this equals scikit-learn's roc_auc_score)."""
    return {label: float(np.trapezoid([r[y] for r in rows], [r[x] for r in rows])) for label, rows in curves.items()}
