"""What every stage or CLI process pays before and after its work: importing torch + transformers + peft +
scikit-learn, and exiting. Side by side, alternating, in fresh interpreters: the interpreter's defaults against
core/runtime.program_gc (collect young objects less often, gc.freeze at exit).

    python bench/process_floor.py [--repeats 3]

Prints, per variant, the median seconds from start to imported and from the last line to the process's end, and
the ratios."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CHILD = """
import sys, time
{setup}
import transformers.trainer, peft, sklearn.metrics
print(time.time(), flush=True)
"""
VARIANTS = {"defaults": "", "program_gc": "from qlora_sentiment.core.runtime import program_gc\nprogram_gc()"}


def one(setup: str) -> tuple[float, float]:
    start = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)], capture_output=True, text=True, check=True)
    end = time.time()
    imported = float(done.stdout.strip().splitlines()[-1])
    return imported - start, end - imported


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, setup in VARIANTS.items():  # alternating: a slower minute of the machine hits both
            runs[name].append(one(setup))
    medians = {name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
               for name, rows in runs.items()}
    print("| variant | import (s) | exit (s) | total (s) |\n|---|---|---|---|")
    for name, (imp, ext) in medians.items():
        print(f"| {name} | {imp:.2f} | {ext:.2f} | {imp + ext:.2f} |")
    (bi, be), (ai, ae) = medians["defaults"], medians["program_gc"]
    print(f"ratios defaults / program_gc: import {bi / ai:.2f}x, exit {be / ae:.1f}x, "
          f"total {(bi + be) / (ai + ae):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
