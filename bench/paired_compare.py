"""Two runs' test predictions compared pair by pair (issue 40's recipe frontier): accuracy of each, McNemar's exact
test on the aspects one gets right and the other wrong, and the error rate by sentence kind (one aspect, aspects
that agree, aspects that disagree), both runs grouped by the FIRST run's sentences (a recipe that rewrites the text,
such as marking the aspect in place, must not change what counts as one sentence).

    python bench/paired_compare.py runA/metrics/predictions.jsonl runB/metrics/predictions.jsonl

Both files must hold the same rows in the same order (the same test split), as the evaluate stage writes them.
"""

import argparse
import json

import numpy as np

from qlora_sentiment.evaluation.error_analysis import aspect_error_rates
from qlora_sentiment.evaluation.significance import mcnemar_exact


def read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    first, second = read(args.first), read(args.second)
    if len(first) != len(second) or any(a["label"] != b["label"] or a.get("aspect") != b.get("aspect")
                                        for a, b in zip(first, second)):
        raise SystemExit("error: the two files do not hold the same rows in the same order")
    right = [np.array([r["label"] == r["predicted"] for r in rows]) for rows in (first, second)]
    groups = [row.get("group", row["text"]) for row in first]
    for name, rows, correct in zip((args.first, args.second), (first, second), right):
        # the evaluate stage's own rule (error_analysis.json's "sentences"), on the first run's sentences
        kinds = aspect_error_rates([{**row, "group": group} for row, group in zip(rows, groups)])["sentences"]
        rates = {k: f"{v['error_rate']:.1%} of {v['n']}" for k, v in kinds.items() if v["n"]}
        print(f"{name}: accuracy {correct.mean():.2%}; errors by sentence kind {rates}")
    print("McNemar, second vs first:", mcnemar_exact(right[1], right[0]))


if __name__ == "__main__":
    main()
