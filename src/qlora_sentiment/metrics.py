"""Classification metrics from true labels and per-label probabilities (scikit-learn does the arithmetic)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: list[str], proba: np.ndarray, labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score

    index = {name: i for i, name in enumerate(labels)}
    truth = np.array([index[y] for y in y_true])
    pred = proba.argmax(axis=1)
    out = {"n": int(len(truth)), "accuracy": float(accuracy_score(truth, pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(truth, pred, labels=range(len(labels)), average=average, zero_division=0)
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
