"""Load on the web API: the real `qlora-sentiment serve` on loopback, hit by many concurrent clients (httpx async).

Three runs, each against a freshly started server:

- plain:       N requests at concurrency C; every one should be a 200 (0 errors, 0 5xx).
- disconnects: the same, but 10 % of the clients give up early (after a random 1 ms to 2 × the plain p50): their
               work should be dropped before the forward pass (the server's /health counts it) and every other
               request answered 200.
- overload:    the same load against `--max-queue` C/4: the requests beyond the bound get 503 with Retry-After,
               nothing else fails (no other 5xx, no errors).

    python bench/load.py                                   # tiny random model, trained here for a few steps
    python bench/load.py --model models/adapter --base models/base --requests 500

Prints a table and writes bench/load.json. Figures: BENCHMARKS.md ("Web API under load").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "qlora-sentiment")
WORDS = "great awful boring brilliant dull fun bad good loved hated slow warm funny joyless overlong".split()


def tiny_model(folder: Path) -> tuple[Path, Path]:
    """The tests' tiny random llama with an adapter trained for a few steps: (adapter, base)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import build_tiny_llama, train_tiny

    cwd = os.getcwd()
    try:
        train_tiny(folder, build_tiny_llama(folder / "llama"), **{"train.max_steps": 4})
    finally:
        os.chdir(cwd)
    return folder / "adapter", folder / "base"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, max_queue: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [CLI, "serve", "--model", str(args.model), "--port", str(port), "--threads", str(args.threads),
           "--max-queue", str(max_queue), "--max-batch", str(args.max_batch)]
    if args.base:
        cmd += ["--base", str(args.base)]
    cmd += getattr(args, "extra", [])
    log = open(args.log_dir / f"server-{port}.log", "w")  # closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}): {' '.join(cmd)}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server was not ready within 300 s")


async def load(url: str, requests: int, concurrency: int, give_up: float, give_up_after: float, seed: int) -> dict:
    rng = random.Random(seed)
    plan = [(f"review {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(3, 20))),
             rng.uniform(0.001, give_up_after) if rng.random() < give_up else None) for i in range(requests)]
    statuses, latencies, retry_after, errors = Counter(), [], set(), Counter()
    todo = iter(plan)

    # One client each (a pool of C connections shared by all costs httpx far more CPU), made before the clock
    # starts, all with one TLS context (loading the CA bundle costs ~20 ms of CPU a client).
    tls = ssl.create_default_context()
    new_client = lambda: httpx.AsyncClient(base_url=url, timeout=60, verify=tls,  # noqa: E731
                                           limits=httpx.Limits(max_connections=1))
    clients = [new_client() for _ in range(concurrency)]

    async def worker(i):
        for text, deadline in todo:
            started = time.perf_counter()
            try:
                call = clients[i].post("/predict", json={"text": text})
                response = await (asyncio.wait_for(call, deadline) if deadline else call)
            except asyncio.TimeoutError:  # this client gave up: it goes away, a new one takes its place
                statuses["gave up (client)"] += 1
                await clients[i].aclose()  # a cancelled request can leave httpx's pool slot taken
                clients[i] = new_client()
                continue
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            elif response.status_code == 503:
                retry_after.add(response.headers.get("retry-after"))

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    for client in clients:
        await client.aclose()
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None

    return {"requests": requests, "concurrency": concurrency, "seconds": round(seconds, 2),
            "answered_per_s": round(statuses[200] / seconds, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}, "errors": dict(errors),
            "retry_after": sorted(r for r in retry_after if r)}


def run(args, name: str, max_queue: int, give_up: float, give_up_after: float) -> dict:
    proc, url = start_server(args, max_queue)
    try:
        before = httpx.get(f"{url}/health", timeout=10).json()
        result = asyncio.run(load(url, args.requests, args.concurrency, give_up, give_up_after, args.seed))
        time.sleep(0.5)  # let the server notice the last disconnects
        after = httpx.get(f"{url}/health", timeout=10).json()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if result["errors"] or any(code.startswith("5") and code != "503" for code in result["statuses"]):
        print(f"{name}: server log:\n" + (args.log_dir / f"server-{url.rsplit(':', 1)[1]}.log").read_text()[-3000:])
    server = {k: after[k] - before[k] for k in ("requests", "forward_batches", "failures", "rejected", "timeouts",
                                                "disconnected", "dropped")}
    return {"run": name, "max_queue": max_queue, **result, "server": server}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="adapter or export folder (default: a tiny model built here)")
    parser.add_argument("--base", type=Path, help="base_model folder for --model (optional)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=256, help="the server's --max-queue in the first two runs")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "load.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = str(args.model or "tiny random llama, adapter trained 4 steps here")
    with tempfile.TemporaryDirectory() as tmp:
        args.log_dir = Path(tmp)
        if args.model is None:
            args.model, args.base = tiny_model(Path(tmp))
        plain = run(args, "plain", args.max_queue, 0.0, 0.0)
        give_up_after = 2 * plain["p50_ms"] / 1000
        results = [plain, run(args, "10% disconnect early", args.max_queue, 0.10, give_up_after),
                   run(args, "overload", max(1, args.concurrency // 4), 0.0, 0.0)]
    print("| run | --max-queue | seconds | answered/s | p50 ms | p99 ms | statuses | client errors | server: "
          "batches / failures / rejected / timeouts / disconnected / dropped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["server"]
        print(f"| {r['run']} | {r['max_queue']} | {r['seconds']} | {r['answered_per_s']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['statuses']} | {r['errors'] or 0} | {s['forward_batches']} / {s['failures']} / "
              f"{s['rejected']} / {s['timeouts']} / {s['disconnected']} / {s['dropped']} |")
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
    args.out.write_text(json.dumps({"machine": machine, "model": model, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
