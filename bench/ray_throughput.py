"""`predict --ray` throughput (issue 25 item 3): rows/s with 1 and 2 Ray workers on a local cluster, and what
10 M rows cost in worker-hours at the measured per-worker rate.

    python bench/ray_throughput.py                                   # 20,000 rows, workers 1 and 2, models/export
    python bench/ray_throughput.py --rows 2000 --workers 1 2 4 --threads 1 --price 0.05 --out /tmp/ray.json

Rows: metrics/predictions.jsonl's texts repeated to --rows, one .jsonl input. One local cluster (--workers' largest
x --threads CPUs) serves every run. Each worker count labels the rows twice, all of them and a quarter of them:
the difference takes out the fixed cost of a run (workers starting, each loading the model) and leaves the steady
rate; per worker = steady rate / workers. 10 M rows then take 1e7 / per-worker rate / 3600 worker-hours (plus one
fixed start-up), and --price (per worker-hour) turns that into money. The runs' labels are compared with the first
worker count's: Ray's output does not depend on how many workers made it.
Writes bench/ray_throughput.json (--out).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEN_MILLION = 10_000_000


def write_input(path: Path, texts: list[str], rows: int) -> Path:
    path.write_text("".join(json.dumps({"text": texts[i % len(texts)]}) + "\n" for i in range(rows)))
    return path


def labels(folder: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [r["label"] for shard in sorted(folder.glob("part-*.parquet")) for r in pq.read_table(shard).to_pylist()]


def measure(args, work: Path, texts: list[str], workers: int) -> dict:
    from qlora_sentiment.labelling.ray_labelling import label_with_ray

    runs = {}
    for rows in (args.rows // 4, args.rows):
        source = write_input(work / f"in-{rows}.jsonl", texts, rows)
        out = work / f"out-{workers}-{rows}"
        runs[rows] = label_with_ray([source], args.model, out, backend=args.backend, workers=workers,
                                    batch_size=args.batch_size, threads_per_worker=args.threads,
                                    rows_per_shard=args.rows)
    small, full = runs[args.rows // 4], runs[args.rows]
    extra = full.seconds - small.seconds
    steady = (full.rows - small.rows) / extra if extra > 0 else None
    fixed = full.seconds - full.rows / steady if steady else None
    per_worker = steady / workers if steady else None
    hours = TEN_MILLION / per_worker / 3600 if per_worker else None
    return {"workers": workers, "rows": full.rows, "seconds": round(full.seconds, 2),
            "rows_per_s": round(full.rows_per_second, 2), "steady_rows_per_s": steady and round(steady, 2),
            "fixed_s": fixed and round(fixed, 1), "per_worker_rows_per_s": per_worker and round(per_worker, 2),
            "worker_hours_10m": hours and round(hours, 2), "wall_hours_10m": hours and round(hours / workers, 2),
            "cost_10m": round(hours * args.price, 2) if hours and args.price else None,
            "labels": labels(work / f"out-{workers}-{args.rows}")}


def main() -> None:
    from qlora_sentiment.model.onnx import BACKENDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models/export"))
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--predictions", default=str(ROOT / "metrics/predictions.jsonl"), help="texts to repeat")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--price", type=float, default=None, help="price of a worker-hour (e.g. a vCPU-hour x threads)")
    parser.add_argument("--out", default=str(ROOT / "bench/ray_throughput.json"))
    args = parser.parse_args()
    if args.rows < 8:
        parser.error("--rows: at least 8 (a quarter of them is labelled too)")

    import ray

    from qlora_sentiment.core.runtime import configure_environment

    configure_environment()
    texts = [json.loads(line)["text"] for line in Path(args.predictions).read_text(encoding="utf-8").splitlines()]
    ray.init(num_cpus=max(args.workers) * args.threads, include_dashboard=False, logging_level=logging.WARNING)
    results = []
    try:
        with tempfile.TemporaryDirectory() as work:
            for workers in args.workers:
                results.append(measure(args, Path(work), texts, workers))
    finally:
        ray.shutdown()
    first = results[0].pop("labels")
    print(f"{'workers':>7} {'rows':>7} {'seconds':>8} {'rows/s':>7} {'steady':>7} {'fixed s':>7} {'/worker':>7} "
          f"{'10M: worker-h':>13} {'wall-h':>7} {'agree':>6}")
    for r in results:
        got = r.pop("labels", first)
        r["agreement"] = sum(a == b for a, b in zip(got, first)) / len(first)
        print(f"{r['workers']:>7} {r['rows']:>7,} {r['seconds']:>8.1f} {r['rows_per_s']:>7.1f} "
              f"{r['steady_rows_per_s'] or float('nan'):>7.1f} {r['fixed_s'] or float('nan'):>7.1f} "
              f"{r['per_worker_rows_per_s'] or float('nan'):>7.1f} {r['worker_hours_10m'] or float('nan'):>13.1f} "
              f"{r['wall_hours_10m'] or float('nan'):>7.1f} {r['agreement']:>6.1%}"
              + (f"  ~{r['cost_10m']:,.2f} at {args.price}/worker-hour" if r["cost_10m"] is not None else ""))
    Path(args.out).write_text(json.dumps({
        "model": args.model, "backend": args.backend, "rows": args.rows, "threads_per_worker": args.threads,
        "batch_size": args.batch_size, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
