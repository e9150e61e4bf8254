# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""`qlora-sentiment compare` and `summary` refusals (experiments/compare.py, experiments/summary.py)."""

from __future__ import annotations

from . import cli, index, rows_of

ROWS = rows_of(
    "compare",
    ("compare-input-missing",
     'missing.json: no such file (--input takes saved',
     'Save it first: `dvc exp show --json > exps.json`, then `--input exps.json`.',
     cli("compare", "--input", "missing.json"),
     '{path}: no such file (--input takes saved `dvc exp show --json` output)'),
    ("compare-without-dvc",
     'dvc is not on PATH',
     'Activate the environment that has DVC (`make install`, or `pip install dvc hydra-core`), or pass `--input`.',
     cli("compare", env={"PATH": "<tmp>"}),
     'dvc is not on PATH: install it (make install, or pip install dvc hydra-core) or activate the environment '
     'that has it, or pass --input with saved `dvc exp show --json` output'),
) + rows_of(
    "summary",
    ("summary-before-run",
     'metrics/metrics.json: not found',
     '`qlora-sentiment summary` reads what the pipeline wrote: run `dvc repro` (or `make run`) first, from the '
     'project folder (the error line says so too).',
     cli("summary"),  # an empty folder: nothing the pipeline writes
     '{path}: not found; run `dvc repro` (or `make run`) in the project folder to produce it'),
)
bad_input = index(ROWS)
