"""DVC stage `evaluate`: base + adapter on the test split -> metrics, predictions, confusion data and PNG."""

import argparse
from pathlib import Path

from qlora_sentiment.runtime import configure_environment, stage_entry

configure_environment()

from qlora_sentiment.config import load_params  # noqa: E402
from qlora_sentiment.evaluation import evaluate, load_scorer  # noqa: E402
from qlora_sentiment.io import read_jsonl, write_json, write_jsonl  # noqa: E402
from qlora_sentiment.plots import confusion_png  # noqa: E402
from qlora_sentiment.runtime import log, setup_torch  # noqa: E402


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--test", required=True, help="test split (jsonl)")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--confusion", required=True, help="rows {actual, predicted} for DVC's confusion template")
    parser.add_argument("--confusion-png", required=True)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    setup_torch(params.runtime.torch_threads, params.seed)
    result = evaluate(load_scorer(args.adapter, args.base), read_jsonl(args.test), params.eval.batch_size)
    write_json(args.metrics, result.metrics)
    write_jsonl(args.predictions, result.predictions)
    write_json(args.confusion, result.confusion_rows)
    confusion_png(result.counts, result.labels, Path(args.confusion_png),
                  f"Test confusion matrix (n={result.metrics['n']}, accuracy {result.metrics['accuracy']:.3f})")
    log.info("accuracy %.4f, macro F1 %.4f on %d test examples",
             result.metrics["accuracy"], result.metrics["macro"]["f1"], result.metrics["n"])


if __name__ == "__main__":
    main()
