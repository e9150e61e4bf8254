"""Evaluation arithmetic on hand-made cases, checked against scikit-learn / SciPy or by hand."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from qlora_sentiment.evaluation.curves import areas, pr_rows, roc_rows
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.evaluation.error_analysis import bucket_error_rates, buckets_of, confident_mistakes
from qlora_sentiment.evaluation.analysis import analyze, summarize
from qlora_sentiment.evaluation.metrics import (bootstrap_intervals, calibration_metrics, macro_f1_rows,
                                                reliability_bins)
from qlora_sentiment.evaluation.significance import mcnemar_exact

LABELS = ["negative", "positive"]


def predictions(truth, p_positive, texts=None):
    texts = texts or [f"review {i}" for i in range(len(truth))]
    return [
        {"id": i, "text": t, "label": LABELS[y], "predicted": LABELS[int(p >= 0.5)],
         "probabilities": {"negative": 1 - p, "positive": p}}
        for i, (y, p, t) in enumerate(zip(truth, p_positive, texts))
    ]


def test_summary_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 200)
    p = np.clip(truth * 0.6 + rng.normal(0.2, 0.25, 200), 0.01, 0.99)
    m = summarize(predictions(truth, p), LABELS, seed=1)
    pred = (p >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert m["macro"]["f1"] == pytest.approx(f1_score(truth, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(truth, p))
    assert m["calibration"]["brier"] == pytest.approx(np.mean((p - truth) ** 2))
    low, high = m["ci95"]["accuracy"]["low"], m["ci95"]["accuracy"]["high"]
    assert low < m["accuracy"] < high and high - low < 0.2


def test_ece_and_reliability_bins_by_hand():
    # Two bins: confidence 0.9 (4 examples, 3 right) and 0.6 (2 examples, 1 right).
    truth = np.array([1, 1, 1, 0, 1, 0])
    proba = np.array([[0.1, 0.9]] * 4 + [[0.4, 0.6]] * 2)
    bins = reliability_bins(truth, proba, n_bins=10)
    assert [(b["count"], b["accuracy"]) for b in bins] == [(2, 0.5), (4, 0.75)]
    expected = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(0.5 - 0.6)
    assert calibration_metrics(truth, proba)["ece"] == pytest.approx(expected)


def test_bootstrap_macro_f1_has_scikit_learns_bits():
    """The bootstrap's vectorized macro F1 equals f1_score(average="macro", zero_division=0) exactly (the committed
    intervals keep their bytes), with labels a resample lacks in truth, in predictions or in both."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for n_labels, length in ((2, 1), (2, 37), (3, 5), (3, 200), (5, 9)):
        truth = rng.integers(0, n_labels, (200, length))
        pred = rng.integers(0, max(n_labels - 1, 2), (200, length))  # the last label never predicted (3 and 5)
        expected = [f1_score(t, p, labels=range(n_labels), average="macro", zero_division=0)
                    for t, p in zip(truth, pred)]
        assert macro_f1_rows(truth, pred, n_labels).tolist() == expected, (n_labels, length)


def test_bootstrap_is_seeded():
    truth = np.array([0, 1] * 50)
    pred = np.array([0, 1] * 40 + [1, 0] * 10)
    a = bootstrap_intervals(truth, pred, 2, seed=7, n_resamples=200)
    assert a == bootstrap_intervals(truth, pred, 2, seed=7, n_resamples=200)
    assert a != bootstrap_intervals(truth, pred, 2, seed=8, n_resamples=200)
    assert a["accuracy"]["low"] < 0.8 < a["accuracy"]["high"]


def test_mcnemar_exact_on_a_known_table():
    # 10 examples only the fine-tuned model gets right, 2 only the baseline: exact two-sided p = 2 * P(X <= 2),
    # X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096.
    tuned = np.array([True] * 10 + [False] * 2 + [True] * 30 + [False] * 5)
    base = np.array([False] * 10 + [True] * 2 + [True] * 30 + [False] * 5)
    result = mcnemar_exact(tuned, base)
    assert (result["only_finetuned_correct"], result["only_baseline_correct"]) == (10, 2)
    assert (result["both_correct"], result["both_wrong"]) == (30, 5)
    assert result["p_value"] == pytest.approx(2 * 79 / 4096)
    from scipy.stats import binomtest

    assert result["p_value"] == pytest.approx(binomtest(2, 12, 0.5).pvalue)


def test_roc_and_pr_rows():
    truth = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.7, 0.9, 0.4, 0.2])
    proba = np.stack([1 - p, p], axis=1)
    roc = roc_rows(truth, proba, LABELS)
    assert list(roc) == ["positive"]  # binary: the positive label's curve only
    assert areas(roc, "fpr", "tpr")["positive"] == pytest.approx(roc_auc_score(truth, p))
    pr = pr_rows(truth, proba, LABELS)["positive"]
    assert pr[0]["recall"] == 0.0 and pr[-1]["recall"] == 1.0
    three = ["negative", "neutral", "positive"]
    proba3 = np.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [0.5, 0.3, 0.2]])
    assert list(roc_rows(np.array([0, 1, 2, 1]), proba3, three)) == three


def test_cue_buckets_and_mistakes():
    assert buckets_of("It isn't good, but I smiled!") == {
        "negation": True, "contrast": True, "intensifier": False, "question_mark": False, "exclamation_mark": True}
    assert buckets_of("A truly great film?")["intensifier"] and buckets_of("A truly great film?")["question_mark"]
    texts = ["not good at all", "great fun", "never dull but slow", "a so so film", "wonderful", "bad"]
    preds = predictions([0, 1, 1, 0, 1, 0], [0.8, 0.9, 0.3, 0.2, 0.7, 0.45], texts)
    rates = bucket_error_rates(preds)
    assert rates["overall"] == {"n": 6, "errors": 2, "error_rate": pytest.approx(2 / 6)}
    assert rates["cues"]["negation"]["with"] == {"n": 2, "errors": 2, "error_rate": 1.0}
    assert rates["cues"]["negation"]["without"]["errors"] == 0
    assert sum(q["n"] for q in rates["length_quartiles"]) == 6
    mistakes = confident_mistakes(preds)
    assert [m["id"] for m in mistakes] == [0, 2]  # 0.8 confident before 0.7
    assert mistakes[0]["confidence"] == pytest.approx(0.8)


def test_analyze_compares_with_baseline():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 300)
    tuned = predictions(truth, np.clip(truth * 0.7 + rng.normal(0.15, 0.2, 300), 0.01, 0.99))
    base = predictions(truth, np.clip(rng.uniform(0.3, 0.8, 300), 0.01, 0.99))
    result = analyze(tuned, base, LABELS, seed=0)
    cmp = result.metrics["baseline"]
    assert cmp["delta"]["accuracy"] == pytest.approx(result.metrics["accuracy"] - cmp["metrics"]["accuracy"])
    assert cmp["mcnemar"]["significant"] and cmp["mcnemar"]["p_value"] < 1e-6
    assert sum(r["count"] for r in result.reliability) == 300
    assert result.counts.sum() == 300 and len(result.confusion_rows) == 300
    for section in ("# Evaluation summary", "McNemar", "## Error rates by cue", "## Most confident mistakes",
                    "## Before / after"):
        assert section in result.markdown
    assert result.markdown.count("\n| ") >= 8 + 10  # before/after rows and mistakes rows
    with pytest.raises(ModelError, match="other test examples"):
        analyze(tuned, base[:-1], LABELS, seed=0)
    assert math.isfinite(result.metrics["calibration"]["ece"])
