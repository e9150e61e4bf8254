"""How closely the merged export reproduces the adapter on the test split.

    python tools/compare_export.py [--adapter models/adapter] [--base models/base] [--export models/export]
"""

import argparse
import json

import numpy as np

from qlora_sentiment.core.runtime import configure_environment, setup_torch

configure_environment()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapter", default="models/adapter")
    parser.add_argument("--base", default="models/base")
    parser.add_argument("--export", default="models/export")
    parser.add_argument("--test", default="data/prepared/test.jsonl")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    setup_torch(args.threads, 0)
    from qlora_sentiment import SentimentAnalyzer

    rows = [json.loads(line) for line in open(args.test, encoding="utf-8")]
    texts = [r["text"] for r in rows]
    adapter = SentimentAnalyzer.from_pretrained(args.adapter, base=args.base)
    a = adapter.predict(texts, batch_size=32)
    e = SentimentAnalyzer.from_pretrained(args.export).predict(texts, batch_size=32)
    labels = adapter.labels
    pa = np.array([[p["probabilities"][lab] for lab in labels] for p in a])
    pe = np.array([[p["probabilities"][lab] for lab in labels] for p in e])
    same = sum(x["label"] == y["label"] for x, y in zip(a, e))
    accuracy = lambda preds: np.mean([p["label"] == r["label"] for p, r in zip(preds, rows)])  # noqa: E731
    print(f"n={len(rows)}  labels agree {same}/{len(rows)}  max|dp| {np.abs(pa - pe).max():.4f}  "
          f"mean|dp| {np.abs(pa - pe).mean():.5f}  accuracy adapter {accuracy(a):.4f} export {accuracy(e):.4f}")


if __name__ == "__main__":
    main()
