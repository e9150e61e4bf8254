"""DVC stage `evaluate`: base + adapter on the test split, compared with the baseline stage's predictions.

Writes metrics (with bootstrap intervals, calibration and McNemar's test against the baseline), per-example
predictions, the plots' data rows and PNGs, and the error analysis (JSON, CSV and a Markdown summary).
"""

import argparse
import csv
import io
from pathlib import Path

from qlora_sentiment.config import load_params
from qlora_sentiment.core.cpu_matmul import cpu_matmul
from qlora_sentiment.core.io import read_jsonl, write_json, write_jsonl, write_text
from qlora_sentiment.core.runtime import log, setup_stage, stage_entry
from qlora_sentiment.evaluation.analysis import analyze, predict_split
from qlora_sentiment.evaluation.curves import areas
from qlora_sentiment.evaluation.plots import confusion_png, curves_png, reliability_png
from qlora_sentiment.model.adapter import load_scorer


def write_curves(folder: Path, curves: dict[str, list[dict]]) -> None:
    """One file per label, so DVC draws one curve per plot; stale labels from an earlier run are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        if old.stem not in curves:
            old.unlink()
    for label, rows in curves.items():
        write_json(folder / f"{label}.json", rows)


def mistakes_csv(mistakes: list[dict]) -> str:
    out = io.StringIO()
    aspect = ["aspect"] if mistakes and "aspect" in mistakes[0] else []
    writer = csv.DictWriter(out, fieldnames=["id", "label", "predicted", "confidence", *aspect, "text"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(mistakes)
    return out.getvalue()


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--test", required=True, help="test split (jsonl)")
    parser.add_argument("--baseline", required=True, help="baseline stage's predictions (jsonl)")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--error-analysis", required=True, help="error rates by cue and length (json)")
    parser.add_argument("--mistakes", required=True, help="misclassified examples, most confident first (csv)")
    parser.add_argument("--summary", required=True, help="the Markdown summary a reviewer reads")
    parser.add_argument("--plots", required=True, help="folder for plot data and PNGs")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    _, params = setup_stage(params)
    scorer = load_scorer(args.adapter, args.base)
    with cpu_matmul(params.runtime.cpu_matmul):  # as the train stage scored validation
        predictions = predict_split(scorer, read_jsonl(args.test), params.eval.batch_size)
    result = analyze(predictions, read_jsonl(args.baseline), scorer.labels, params.seed)

    plots, m = Path(args.plots), result.metrics
    write_jsonl(args.predictions, predictions)
    write_json(plots / "confusion.json", result.confusion_rows)
    write_curves(plots / "roc", result.roc)
    write_curves(plots / "precision_recall", result.pr)
    write_json(plots / "calibration" / "finetuned.json", result.reliability)
    confusion_png(result.counts, scorer.labels, plots / "confusion_matrix.png",
                  f"Test confusion matrix (n={m['n']}, accuracy {m['accuracy']:.3f})")
    curves_png(result.roc, "fpr", "tpr", plots / "roc.png", "ROC, test split (one-vs-rest)",
               "false positive rate", "true positive rate", areas=areas(result.roc, "fpr", "tpr"), diagonal=True)
    curves_png(result.pr, "recall", "precision", plots / "precision_recall.png",
               "Precision-recall, test split (one-vs-rest)", "recall", "precision")
    reliability_png(result.reliability, result.baseline_reliability, plots / "calibration.png",
                    f"Reliability diagram (ECE {m['calibration']['ece']:.3f}, "
                    f"baseline {m['baseline']['calibration']['ece']:.3f})")
    write_json(args.error_analysis, result.error_analysis)
    write_text(args.mistakes, mistakes_csv(result.mistakes))
    write_text(args.summary, result.markdown)
    write_json(args.metrics, m)  # last: its presence means the whole evaluation was written
    log.info("accuracy %.4f (baseline %.4f), macro F1 %.4f, McNemar p=%.3g on %d test examples",
             m["accuracy"], m["baseline"]["metrics"]["accuracy"], m["macro"]["f1"],
             m["baseline"]["mcnemar"]["p_value"], m["n"])


if __name__ == "__main__":
    main()
