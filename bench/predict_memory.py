"""Peak memory of `qlora-sentiment predict` against the size of its input: it should not grow with the lines.

Each case runs the real command (`qlora_sentiment.cli.main(["predict", ...])`: the reader's checking first pass,
the second pass, the chunks, the formatter, the output and its progress record) in a child process of its own and
reads the child's peak RSS (`os.wait4`'s ru_maxrss). Labelling 2,000,000 lines with a model is out of reach on a
CPU, so by default the scoring step is replaced *inside this script only* by a trivial function (probabilities from
the text's length) and no model is loaded; `--model` runs the real model instead (for the smaller sizes).

    python bench/predict_memory.py                           # 200,000 and 2,000,000 lines, trivial scorer
    python bench/predict_memory.py --lines 20000 200000 --model models/adapter --base models/base
    PYTHONPATH=<old checkout>/src python bench/predict_memory.py --stdout   # an older predict (no --output)

Prints a table and writes bench/predict_memory.json. Figures: BENCHMARKS.md ("predict: memory against input size").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = "great awful boring brilliant dull fun bad good loved hated slow warm funny joyless overlong".split()

# Run in the child: the real CLI, with the scoring swapped for a trivial function unless --model was given.
CHILD = """
import sys
from qlora_sentiment import cli
from qlora_sentiment.labelling import predict_command
from qlora_sentiment import cli_inputs as inputs

class Trivial:
    labels = ["negative", "positive"]

    def predict(self, texts, batch_size=16):
        return [{"label": self.labels[len(t) % 2], "probabilities": {"negative": (len(t) % 100) / 100,
                                                                     "positive": 1 - (len(t) % 100) / 100}}
                for t in texts]

if sys.argv[1] == "trivial":
    predict_command.load_analyzer = lambda args: Trivial()
    inputs.check_model_folder = lambda folder, **_: None
cli.main(sys.argv[2:])
"""


def write_input(path: Path, lines: int) -> None:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(lines):
            handle.write(f"review {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "\n")


def peak_rss_mb(argv: list[str], stdout) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:  # the progress bar: a file, so a full pipe cannot stall the child
        proc = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=stdout, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"predict failed ({proc.returncode}):\n{err.read().decode(errors='replace')[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--format", default="csv", choices=["json", "csv", "table"])
    parser.add_argument("--model", default=None, help="a real adapter or export (default: trivial scorer, no model)")
    parser.add_argument("--base", default=None)
    parser.add_argument("--stdout", action="store_true", help="write to stdout (to a file), not with --output")
    parser.add_argument("--workdir", default=None, help="where the input files go (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "bench/predict_memory.json"))
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="predict-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    empty_model = work / "stand-in-model"  # what --output fingerprints when the scorer is the trivial one
    empty_model.mkdir(exist_ok=True)
    (empty_model / "weights").write_bytes(b"none")
    scorer = "real" if args.model else "trivial"
    model = ["--model", args.model or str(empty_model), *(["--base", args.base] if args.base else []), "--threads", "1"]
    results = []
    for lines in [1, *args.lines]:  # 1 line: the interpreter, the libraries and the model alone
        source = work / f"reviews-{lines}.txt"
        if not source.is_file():
            write_input(source, lines)
        output = work / f"labelled-{lines}.{args.format}"
        argv = ["predict", *model, "--file", str(source), "--format", args.format]
        with open(output if args.stdout else os.devnull, "wb") as sink:
            rss, seconds = peak_rss_mb([scorer, *argv, *([] if args.stdout else ["--output", str(output)])],
                                          sink)
        rows = {"lines": lines, "input_mb": round(source.stat().st_size / 1e6, 1),
                "output_mb": round(output.stat().st_size / 1e6, 1), "peak_rss_mb": round(rss, 1),
                "seconds": round(seconds, 1)}
        results.append(rows)
        print(f"{lines:>10,} lines  input {rows['input_mb']:>7.1f} MB  output {rows['output_mb']:>7.1f} MB  "
              f"peak RSS {rss:>7.1f} MB  {seconds:>7.1f} s", flush=True)
    note = ("scoring replaced by a trivial function inside bench/predict_memory.py (no model loaded); everything "
            "else is the real predict" if scorer == "trivial" else f"real model {args.model}")
    print(note)
    Path(args.out).write_text(json.dumps({"scorer": note, "format": args.format,
                                          "output": "stdout" if args.stdout else "--output",
                                          "python": platform.python_version(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
