"""DVC stage `baseline`: the untuned base model, prompted and quantized as training will be, on the test split."""

import argparse

from qlora_sentiment.config import load_params
from qlora_sentiment.core.cpu_matmul import cpu_matmul
from qlora_sentiment.core.io import read_jsonl, write_json, write_jsonl
from qlora_sentiment.core.runtime import log, setup_stage, stage_entry
from qlora_sentiment.evaluation.analysis import predict_split, reliability_rows, summarize
from qlora_sentiment.model.adapter import load_baseline_scorer


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", required=True)
    parser.add_argument("--test", required=True, help="test split (jsonl)")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--reliability", required=True, help="reliability-diagram rows (json)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    _, params = setup_stage(params)
    labels = list(params.data.labels)
    with cpu_matmul(params.runtime.cpu_matmul):
        predictions = predict_split(load_baseline_scorer(args.base, params), read_jsonl(args.test),
                                    params.eval.batch_size)
    metrics = summarize(predictions, labels, params.seed)
    write_jsonl(args.predictions, predictions)
    write_json(args.reliability, reliability_rows(predictions, labels))
    write_json(args.metrics, metrics)
    log.info("baseline accuracy %.4f, macro F1 %.4f on %d test examples",
             metrics["accuracy"], metrics["macro"]["f1"], metrics["n"])


if __name__ == "__main__":
    main()
