"""The export against the adapter on the test split: agreement, and CPU speed and peak memory side by side.

    python tools/compare_export.py --threads 2        # after `make run`; prints figures and ratios, one run

Each path runs in its own process (so each peak RSS is its own): the 4-bit adapter through the project's scorer
(`SentimentAnalyzer` on models/adapter), and the export through plain transformers
(`pipeline("text-classification", model="models/export", top_k=None)`) on raw review text. Agreement is
measured against the evaluate stage's own predictions (metrics/predictions.jsonl).
"""

import argparse
import json
import resource
import subprocess
import sys
import time

from qlora_sentiment.core.runtime import configure_environment

configure_environment()


def run_case(case: str, args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = [json.loads(line)["text"] for line in open(args.test, encoding="utf-8")]
    start = time.perf_counter()
    if case == "adapter":
        from qlora_sentiment.api.analyzer import SentimentAnalyzer

        analyzer = SentimentAnalyzer.from_pretrained(args.adapter, base=args.base)
        loaded = time.perf_counter()
        rows = analyzer.predict(texts, batch_size=args.batch_size)
        proba = [r["probabilities"] for r in rows]
    else:
        from transformers import pipeline

        classify = pipeline("text-classification", model=args.export, top_k=None, device="cpu")
        loaded = time.perf_counter()
        out = classify(texts, batch_size=args.batch_size)
        proba = [{d["label"]: d["score"] for d in row} for row in out]
    done = time.perf_counter()
    return {"case": case, "n": len(texts), "load_s": loaded - start, "predict_s": done - loaded,
            "texts_per_s": len(texts) / (done - loaded),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "probabilities": proba}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default="models/adapter")
    parser.add_argument("--base", default="models/base")
    parser.add_argument("--export", default="models/export")
    parser.add_argument("--test", default="data/prepared/test.jsonl")
    parser.add_argument("--predictions", default="metrics/predictions.jsonl", help="the evaluate stage's")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--case", choices=["adapter", "pipeline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, args)))
        return
    results = {}
    for case in ("adapter", "pipeline"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--case", case], capture_output=True,
                             text=True, check=True).stdout
        results[case] = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    evaluated = [json.loads(line)["probabilities"] for line in open(args.predictions, encoding="utf-8")]
    labels = list(evaluated[0])

    def compare(name, proba):
        same = sum(max(p, key=p.get) == max(e, key=e.get) for p, e in zip(proba, evaluated))
        worst = max(abs(p[lab] - e[lab]) for p, e in zip(proba, evaluated) for lab in labels)
        print(f"{name}: labels agree with metrics/predictions.jsonl on {same}/{len(evaluated)}, max |dp| {worst:.4f}")

    for case, r in results.items():
        compare(case, r["probabilities"])
        print(f"{case}: {r['texts_per_s']:.1f} texts/s (predict {r['predict_s']:.1f} s, load {r['load_s']:.1f} s), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    a, p = results["adapter"], results["pipeline"]
    print(f"pipeline on the export vs the 4-bit adapter: {p['texts_per_s'] / a['texts_per_s']:.2f}x the texts/s, "
          f"{p['peak_rss_mb'] / a['peak_rss_mb']:.2f}x the peak memory")


if __name__ == "__main__":
    main()
