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

Overload (issue 39 item 6), `--levels`: instead of those three runs, the plain run at each concurrency (goodput:
requests answered 200 per second; 503s and their latency; the texts the server computed), each against a fresh
server warmed up by three 16-text requests before the clock starts (so that it knows its model's pace);
`--before-src DIR` runs every level a second time with the server's code taken from DIR (a `src` folder of another
commit: `git archive`), `--whole-request` once more at the first level with `--max-batch-tokens 1000000`
(the batching before token budgets), all in one run, side by side:

    python bench/load.py --model models/adapter --base models/base --requests 500 --levels 64 256 \
        --before-src /tmp/before/src --whole-request

Prints a table and writes bench/load.json. Figures: BENCHMARKS.md ("Web API under load"; "Overload: admission by
deadline").
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


def start_server(args, max_queue: int, flags: tuple[str, ...] = (), src: Path | None = None
                 ) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [CLI, "serve", "--model", str(args.model), "--port", str(port), "--threads", str(args.threads),
           "--max-queue", str(max_queue), "--max-batch", str(args.max_batch)]
    if args.base:
        cmd += ["--base", str(args.base)]
    cmd += [*getattr(args, "extra", []), *flags]
    log = open(args.log_dir / f"server-{port}.log", "w")  # closed with the process
    env = dict(os.environ, PYTHONPATH=str(src)) if src else None  # another commit's code (--before-src)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
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
    statuses, latencies, retry_after, errors, refused = Counter(), [], set(), Counter(), []
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
                refused.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    for client in clients:
        await client.aclose()
    latencies.sort()
    refused.sort()

    def pct(q: float, values: list[float] = latencies) -> float | None:
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) if values else None

    return {"requests": requests, "concurrency": concurrency, "seconds": round(seconds, 2),
            "answered_per_s": round(statuses[200] / seconds, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "refused_p50_ms": pct(0.50, refused), "refused_max_ms": pct(1.0, refused),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}, "errors": dict(errors),
            "retry_after": sorted(r for r in retry_after if r)}


def warm_up(url: str) -> None:
    """Three requests of 16 reviews, one after another: a server that has run a while knows its model's pace
    (server/pace.py measures it on passes at least half full), one just started admits everything."""
    rng = random.Random(1)
    for _ in range(3):
        texts = [" ".join(rng.choices(WORDS, k=20)) for _ in range(16)]
        httpx.post(f"{url}/predict", json={"texts": texts}, timeout=120).raise_for_status()


def run(args, name: str, max_queue: int, give_up: float, give_up_after: float, concurrency: int | None = None,
        flags: tuple[str, ...] = (), src: Path | None = None) -> dict:
    proc, url = start_server(args, max_queue, flags, src)
    try:
        if args.levels:
            warm_up(url)
        before = httpx.get(f"{url}/health", timeout=10).json()
        result = asyncio.run(load(url, args.requests, concurrency or args.concurrency, give_up, give_up_after,
                                  args.seed))
        time.sleep(0.5)  # let the server notice the last disconnects
        after = httpx.get(f"{url}/health", timeout=10).json()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if result["errors"] or any(code.startswith("5") and code != "503" for code in result["statuses"]):
        print(f"{name}: server log:\n" + (args.log_dir / f"server-{url.rsplit(':', 1)[1]}.log").read_text()[-3000:])
    server = {k: after[k] - before[k] for k in ("requests", "texts", "forward_batches", "failures", "rejected",
                                                "timeouts", "disconnected", "dropped")}
    return {"run": name, "max_queue": max_queue, **result, "server": server}


def overload(args) -> list[dict]:
    """--levels: the plain run at each concurrency, for this code and (--before-src) the code before; then
    (--whole-request) the first level without the token budget. The versions' order alternates per level, so that
    a busy spell of a shared machine falls on both alike."""
    results = []
    versions = [("after", None)] + ([("before", args.before_src)] if args.before_src else [])
    for n, concurrency in enumerate(args.levels):
        # every client is 127.0.0.1 here (as behind a proxy): room for all of them (--max-connections-per-client)
        flags = ("--max-connections-per-client", str(concurrency + 16))
        for label, src in versions[::-1] if n % 2 else versions:
            results.append(run(args, f"{label}, c={concurrency}", args.max_queue, 0.0, 0.0, concurrency, flags, src))
    if args.whole_request:
        results.append(run(args, f"whole-request batching, c={args.levels[0]}", args.max_queue, 0.0, 0.0,
                           args.levels[0], ("--max-batch-tokens", "1000000")))
    print("| run | seconds | goodput (200/s) | p50 / p99 ms of 200s | statuses | 503 p50 / max ms | texts computed "
          "/ answered 200 | server: rejected / timeouts / dropped |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["server"]
        print(f"| {r['run']} | {r['seconds']} | {r['answered_per_s']} | {r['p50_ms']} / {r['p99_ms']} | "
              f"{r['statuses']} | {r['refused_p50_ms']} / {r['refused_max_ms']} | {s['texts']} / "
              f"{r['statuses'].get('200', 0)} | {s['rejected']} / {s['timeouts']} / {s['dropped']} |")
    return results


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
    parser.add_argument("--levels", type=int, nargs="+", help="overload: plain runs at these concurrencies only")
    parser.add_argument("--before-src", type=Path, help="with --levels: also run the server from this src folder")
    parser.add_argument("--whole-request", action="store_true",
                        help="with --levels: also the first level with --max-batch-tokens 1000000")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = str(args.model or "tiny random llama, adapter trained 4 steps here")
    with tempfile.TemporaryDirectory() as tmp:
        args.log_dir = Path(tmp)
        if args.model is None:
            args.model, args.base = tiny_model(Path(tmp))
        if args.levels:
            write(args, model, overload(args))
            return
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
    write(args, model, results)


def write(args, model: str, results: list[dict]) -> None:
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
    args.out.write_text(json.dumps({"machine": machine, "model": model, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
