"""CPU inference paths side by side (issue 25 item 2): texts/s, peak RSS and agreement with the evaluate stage's
labels (`metrics/predictions.jsonl`) on the same test reviews, each variant in a child process of its own.

    python bench/throughput.py --adapter models/adapter --base models/base --export models/export

Variants: the 4-bit adapter (what `predict` and `serve` run today), the merged export in float32 and in bf16,
dynamic int8 quantization of the export's Linear layers (`torch.ao.quantization.quantize_dynamic`: all of them,
or the transformer's only, the score head kept in float32), and the float32 export at a larger batch. Every variant scores the texts through `SentimentAnalyzer.predict` (cleaning,
prompt, padding, softmax: what the CLI does). ONNX Runtime is not measured: `onnxruntime` is not in the locks.
Writes bench/throughput.json; figures in BENCHMARKS.md ("predict: inference paths on the CPU").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
import torch
from qlora_sentiment.serving.analyzer import SentimentAnalyzer
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
texts = [json.loads(line)["text"] for line in open(spec["predictions"], encoding="utf-8")][: spec["n"]]
model = SentimentAnalyzer.from_pretrained(spec["model"], base=spec.get("base"))
if spec["dtype"] == "bf16":
    model.scorer.model.to(torch.bfloat16)
elif spec["dtype"] == "int8":
    from torch.ao.quantization import quantize_dynamic
    model.scorer.model = quantize_dynamic(model.scorer.model, {torch.nn.Linear}, dtype=torch.qint8)
elif spec["dtype"] == "int8-body":  # the transformer's Linear layers only: the score head stays float32
    from torch.ao.quantization import quantize_dynamic
    model.scorer.model.model = quantize_dynamic(model.scorer.model.model, {torch.nn.Linear}, dtype=torch.qint8)
model.predict(texts[:spec["batch"]], batch_size=spec["batch"])  # warm-up: first-call allocations
started = time.perf_counter()
out = model.predict(texts, batch_size=spec["batch"])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "labels": [p["label"] for p in out],
                  "positive": [p["probabilities"].get("positive") for p in out],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(spec: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path, default=ROOT / "models/adapter")
    parser.add_argument("--base", type=Path, default=ROOT / "models/base")
    parser.add_argument("--export", type=Path, default=ROOT / "models/export")
    parser.add_argument("--predictions", type=Path, default=ROOT / "metrics/predictions.jsonl")
    parser.add_argument("--n", type=int, default=1000, help="test reviews scored per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "throughput.json")
    args = parser.parse_args()
    reference = [json.loads(line) for line in args.predictions.open(encoding="utf-8")][: args.n]
    common = {"predictions": str(args.predictions), "n": args.n, "threads": args.threads}
    variants = [
        ("adapter (4-bit, today's default)", {"model": str(args.adapter), "base": str(args.base), "dtype": "as-is",
                                              "batch": 16}),
        ("export float32", {"model": str(args.export), "dtype": "as-is", "batch": 16}),
        ("export bf16", {"model": str(args.export), "dtype": "bf16", "batch": 16}),
        ("export dynamic int8", {"model": str(args.export), "dtype": "int8", "batch": 16}),
        ("export dynamic int8, score head float32", {"model": str(args.export), "dtype": "int8-body", "batch": 16}),
        ("export float32, batch 64", {"model": str(args.export), "dtype": "as-is", "batch": 64}),
    ]
    rows = []
    for name, spec in variants:
        result = run({**common, **spec})
        if "error" not in result:
            labels = result.pop("labels")
            positive = result.pop("positive")
            result["texts_per_s"] = round(len(labels) / result["seconds"], 2)
            result["labels_changed"] = sum(a != r["predicted"] for a, r in zip(labels, reference))
            result["max_abs_dp"] = round(max(abs(p - r["probabilities"]["positive"])
                                             for p, r in zip(positive, reference)), 5)
        rows.append({"variant": name, **{k: v for k, v in spec.items() if k != "model"}, **result})
        print(json.dumps(rows[-1]), flush=True)
    today = rows[0].get("texts_per_s")
    print(f"\n| variant | batch | texts/s | vs adapter | peak RSS MB | labels changed (of {args.n}) | max |dp| |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | {r['batch']} | error: {r['error']} | | | | |")
            continue
        ratio = f"{r['texts_per_s'] / today:.2f}×" if today else "–"
        print(f"| {r['variant']} | {r['batch']} | {r['texts_per_s']} | {ratio} | {r['peak_rss_mb']:.0f} | "
              f"{r['labels_changed']} | {r['max_abs_dp']} |")
    import torch

    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
