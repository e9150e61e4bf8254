"""Invisible characters change nothing (issue 42 item 3): every code point of the cleaning's invisible policy
(config/text.py), appended to a test review and inserted after each of its spaces, through three paths:

- `adapter`: SentimentAnalyzer on models/adapter (torch; the Python cleaning), what `predict --model models/adapter`
  and `serve` run;
- `export`: SentimentAnalyzer on models/export (ONNX Runtime, the default `predict` path; the Python cleaning);
- `pipeline`: plain transformers `pipeline("text-classification")` on models/export (the tokenizer's normalizer).

    python bench/invisible.py --adapter models/adapter --base models/base --export models/export \\
        --data data/prepared/test.jsonl --reviews 200 --out bench/invisible.json

~1.7 million variants: each path is a deterministic function of what it feeds the model (the cleaned text; for
the pipeline the token ids), so a variant is scored by scoring its group's one representative, and every group
with more than one member is counted. A random sample of raw variants is also scored one by one, without the
grouping, to check that shortcut. Prints and writes flips (label differs from the review's own) and max |dp|.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def variants(review: str, char: str) -> list[str]:
    return [review + char, review + " " + char, review.replace(" ", " " + char)]


def codes() -> list[int]:
    from qlora_sentiment.config.text import invisible_ranges

    return [c for a, b in invisible_ranges() for c in range(a, b + 1)]


def grouped(reviews: list[str], keys):
    """Representative texts to score; for review i, the representatives its variants map to and its own one;
    variants counted. `keys(texts)`: what the path feeds the model for each text."""
    reps: dict = {}
    per_review: dict[int, set[int]] = defaultdict(set)
    own: dict[int, int] = {}
    count = 0
    chars = [chr(c) for c in codes()]
    for i, review in enumerate(reviews):
        texts = [review] + [v for char in chars for v in variants(review, char)]
        for text, k in zip(texts, keys(texts)):
            per_review[i].add(reps.setdefault(k, (len(reps), text))[0])
            own.setdefault(i, reps[k][0])
            count += 1
    texts = [text for _, text in sorted(reps.values())]
    return texts, {i: sorted(s) for i, s in per_review.items()}, own, count


def compare(reviews, rep_proba, first_rep, per_review) -> dict:
    flips, worst = 0, 0.0
    for i in range(len(reviews)):
        own = rep_proba[first_rep[i]]
        for r in per_review[i]:
            flips += int(rep_proba[r].argmax() != own.argmax())
            worst = max(worst, float(np.abs(rep_proba[r] - own).max()))
    return {"groups_beyond_the_reviews": sum(len(s) - 1 for s in per_review.values()), "flipped": flips,
            "max_abs_dp": worst}


def run_path(name, reviews, keys, score, sample: int, seed: int) -> dict:
    started = time.time()
    reps, per_review, first_rep, count = grouped(reviews, keys)
    proba = np.asarray(score(reps))
    result = {"variants": count, "scored": len(reps), **compare(reviews, proba, first_rep, per_review)}
    rng = random.Random(seed)
    chars = [chr(c) for c in codes()]
    picks = [(i, rng.choice(chars), rng.randrange(3))
             for i in rng.sample(range(len(reviews)), min(sample, len(reviews)))]
    raw = [variants(reviews[i], char)[kind] for i, char, kind in picks]
    direct = np.asarray(score(raw))
    own = proba[[first_rep[i] for i, _, _ in picks]]
    result["sample_scored_directly"] = {"texts": len(raw), "flipped": int((direct.argmax(1) != own.argmax(1)).sum()),
                                        "max_abs_dp": float(np.abs(direct - own).max())}
    result["seconds"] = round(time.time() - started, 1)
    print(name, json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/invisible.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer, pipeline

    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    lines = args.data.read_text(encoding="utf-8").splitlines()[: args.reviews]
    reviews = [json.loads(line)["text"] for line in lines]
    out = {"machine": platform.processor() or platform.machine(), "reviews": len(reviews), "code_points": len(codes()),
           "positions": ["appended", "appended after a space", "after each space"], "paths": {}}
    for name, path, backend in (("adapter", args.adapter, "auto"), ("export", args.export, "onnx")):
        analyzer = SentimentAnalyzer.from_pretrained(path, base=args.base, backend=backend)
        clean = analyzer.record.clean_texts

        def score(texts, analyzer=analyzer):
            rows = analyzer.predict(texts, batch_size=16)
            return [[row["probabilities"][lab] for lab in analyzer.labels] for row in rows]

        out["paths"][name] = run_path(name, reviews, clean, score, args.sample, 0)
    tokenizer = AutoTokenizer.from_pretrained(args.export)
    classify = pipeline("text-classification", model=str(args.export), top_k=None)
    labels = list(classify.model.config.id2label.values())

    def score_pipeline(texts):
        rows = classify(texts, batch_size=16)
        return [[{d["label"]: d["score"] for d in row}[lab] for lab in labels] for row in rows]

    out["paths"]["pipeline"] = run_path("pipeline", reviews,
                                        lambda texts: [tuple(ids) for ids in tokenizer(texts)["input_ids"]],
                                        score_pipeline, args.sample, 1)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
