"""Fairness of the web API under a heavy request: short requests' latency alone and beside issue 26's heavy request
(64 texts of 5,000 characters, each cut to the model's max_length tokens), for several `--max-batch-tokens`, and
the throughput each budget leaves for short texts (a burst of short requests, 32 at a time).

For each budget a fresh `qlora-sentiment serve` (the real model: `--model models/adapter --base models/base`):
  alone:  `--shorts` short requests, `--concurrency` at a time (one-review bodies, 3-20 words);
  beside: the heavy request, then the same short load while it runs; the heavy one's status and seconds.
A budget of 1,000,000 with --max-batch 32 is the scheduling before token budgets (32 texts a pass, whatever
their length).

    python bench/fairness.py --model models/adapter --base models/base --budgets 1000000 2048 1024 512 256

Prints a table, writes bench/fairness.json. Figures: BENCHMARKS.md ("Web API: a heavy request beside short ones").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import ROOT, WORDS, start_server

HEAVY = {"texts": ["good film " * 500] * 64}


def shorts(url: str, count: int, concurrency: int, seed: int) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    bodies = [{"text": " ".join(rng.choices(WORDS, k=rng.randint(3, 20)))} for _ in range(count)]

    def one(body):
        started = time.perf_counter()
        response = httpx.post(f"{url}/predict", json=body, timeout=120)
        return response.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, bodies))


def summary(results: list[tuple[int, float]]) -> dict:
    ok = sorted(seconds for status, seconds in results if status == 200)
    pct = lambda q: round(ok[min(len(ok) - 1, int(q * len(ok)))], 2) if ok else None  # noqa: E731
    return {"n": len(results), "ok": len(ok), "p50_s": pct(0.5), "p99_s": pct(0.99), "max_s": pct(1.0),
            "mean_s": round(statistics.mean(ok), 2) if ok else None}


def measure(args, budget: int) -> dict:
    args.extra = ["--max-batch-tokens", str(budget), "--request-timeout", str(args.request_timeout)]
    proc, url = start_server(args, 256)
    try:
        shorts(url, 8, 2, 99)  # warm-up
        alone = summary(shorts(url, args.shorts, args.concurrency, args.seed))
        started = time.perf_counter()  # throughput: a burst of short requests, 32 at a time (full batches)
        burst = shorts(url, args.burst, 32, args.seed + 1)
        burst_rate = round(sum(status == 200 for status, _ in burst) / (time.perf_counter() - started), 1)
        with ThreadPoolExecutor(1) as pool:
            started = time.perf_counter()
            heavy = pool.submit(lambda: httpx.post(f"{url}/predict", json=HEAVY, timeout=300))
            time.sleep(0.5)  # the heavy request is in the queue first
            beside = summary(shorts(url, args.shorts, args.concurrency, args.seed))
            response = heavy.result()
            heavy_s = round(time.perf_counter() - started, 1)
        health = httpx.get(f"{url}/health", timeout=10).json()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"max_batch_tokens": budget, "alone": alone, "burst_texts_per_s": burst_rate, "beside_heavy": beside,
            "heavy_status": response.status_code,
            "heavy_s": heavy_s, "forward_batches": health["forward_batches"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1_000_000, 2048, 1024, 512, 256])
    parser.add_argument("--shorts", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--burst", type=int, default=256, help="short requests sent 32 at a time: texts/s")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--request-timeout", type=float, default=120.0, help="high: measure, do not cut")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "fairness.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        args.log_dir = Path(tmp)
        results = [measure(args, budget) for budget in args.budgets]
    print("| --max-batch-tokens | short alone p50 / p99 s | burst texts/s | short beside heavy p50 / p99 / max s "
          "| heavy: status, s |")
    print("|---|---|---|---|---|")
    for r in results:
        a, b = r["alone"], r["beside_heavy"]
        print(f"| {r['max_batch_tokens']:,} | {a['p50_s']} / {a['p99_s']} | {r['burst_texts_per_s']} | "
              f"{b['p50_s']} / {b['p99_s']} / "
              f"{b['max_s']} ({b['ok']}/{b['n']} ok) | {r['heavy_status']}, {r['heavy_s']} |")
    import torch

    from qlora_sentiment.core.device import cpu_bf16_flags

    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
               "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "cpu_bf16_flags": cpu_bf16_flags()}
    args.out.write_text(json.dumps({"machine": machine, "model": str(args.model), "results": results}, indent=2)
                        + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
