"""FILE.progress.json, the progress record of `predict --output FILE`, and what `--resume` checks before it
continues FILE: the bytes are the truth, the record only says where to look.

The record says which model (sha256 of its folder) labelled which input (sha256 of its bytes, its rows) in which
format, and how many rows and bytes of FILE are complete, with the sha256 of those bytes. Nothing in it is taken on
its word (`check_resume`):

- the record itself: JSON, every key there, each value of its type and range (whole numbers not negative, sha256s
  as 64 hex digits, the format one of predict's); anything else is one line naming the key, not a traceback;
- the model and the input against their fingerprints (the same sha256s, computed now), and the same format,
  --text-column and --raw-csv;
- FILE: at least the bytes the record names, and their sha256 the recorded one;
- the rows: those bytes are read back and their rows counted in the record's format (JSON Lines: one row a line;
  the table: a header line, then one row a line; CSV: a header record, then one record a row, a newline inside a
  quoted cell not ending it), and the count must be the record's `rows_written`, at most the input's rows, and all of
  them when the record says `complete`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.predict_output import bad_input

RECORD_VERSION = 1
FORMATS = ("json", "csv", "table")
_SHA256 = re.compile("[0-9a-f]{64}")
_WHOLE = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0")
_POSITIVE = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1")
_STRING = (lambda v: isinstance(v, str), "a string")
_SHA = (lambda v: isinstance(v, str) and _SHA256.fullmatch(v) is not None, "a sha256 (64 hex digits)")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
# key (dotted inside "model" and "input") -> (test, what it must be)
_FIELDS = {
    "model.path": _STRING, "model.sha256": _SHA, "input.name": _STRING, "input.sha256": _SHA,
    "input.rows": _POSITIVE, "format": (lambda v: v in FORMATS, f"one of {', '.join(FORMATS)}"),
    "text_column": (lambda v: v is None or isinstance(v, str), "a string or null"), "raw_csv": _BOOL,
    "batch_size": _POSITIVE, "threads": (lambda v: v is None or _POSITIVE[0](v), "a whole number >= 1 or null"),
    "rows_written": _WHOLE, "bytes_written": _WHOLE, "output_sha256": _SHA, "complete": _BOOL,
}
KEYS = {"version", *(key.split(".")[0] for key in _FIELDS)}
# an aspect file's columns (predict --aspect-column / --aspect-list-column): absent from a sentence run's record
OPTIONAL = ("aspect_column", "aspect_list_column")


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:39] + "…"


def record_problem(record) -> str | None:
    """What makes `record` (parsed JSON) no progress record of this version, in a few words; None if it is one."""
    if not isinstance(record, dict) or not KEYS <= record.keys() or type(record["version"]) is not int \
            or record["version"] != RECORD_VERSION:
        return "not a progress record of this version"
    for key, (test, wanted) in _FIELDS.items():
        outer, _, inner = key.partition(".")
        if inner and not isinstance(record[outer], dict):
            return f"{outer} is {_shown(record[outer])}, not an object"
        value = record[outer].get(inner, KeyError) if inner else record[outer]
        if value is KeyError:
            return f"{key} is missing"
        if not test(value):
            return f"{key} is {_shown(value)}, not {wanted}"
    for key in OPTIONAL:
        if not isinstance(record.get(key), str | None):
            return f"{key} is {_shown(record[key])}, not a string or null"
    return None


def read_record(path: Path, record_path: Path) -> dict:
    """The record beside FILE, checked whole (`record_problem`), or one DataError."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        why = record_problem(record)
    except FileNotFoundError:
        why = "missing"
    except (OSError, ValueError) as exc:
        why = f"unreadable: {exc}"
    if why:
        raise DataError(bad_input("predict-resume-no-record").format(path=path, record=record_path.name, why=why))
    return record


def read_prefix(path: Path, size: int, fmt: str):
    """(sha256 object, rows) of FILE's first `size` bytes, read once: rows counted in `fmt` (None: the bytes do not
    end with a whole row), or (None, None) when FILE holds fewer bytes."""
    digest, lines, records, quotes = hashlib.sha256(), 0, 0, 0
    ends_a_row = True
    with path.open("rb") as handle:
        left = size
        while left:
            line = handle.readline(min(left, 1 << 20))
            if not line:
                return None, None
            left -= len(line)
            digest.update(line)
            quotes += line.count(b'"')  # in CSV a newline ends a record only outside quotes: after an even count
            ends_a_row = line.endswith(b"\n") and (fmt != "csv" or quotes % 2 == 0)
            if line.endswith(b"\n"):
                lines += 1
                records += quotes % 2 == 0
    if not size:
        return digest, 0
    if not ends_a_row:
        return digest, None
    return digest, (records if fmt == "csv" else lines) - (fmt != "json")  # csv and table: a header first


def check_resume(path: Path, record_path: Path, settings: dict) -> tuple[dict, object]:
    """The record of FILE, checked against the model, the input, the arguments and FILE's bytes (module
    docstring), and the sha256 object of the bytes it names, to go on from; one DataError at the first mismatch."""
    earlier = read_record(path, record_path)
    differs = [what for what, key in (("by another model", "model"), ("from other input", "input"))
               if earlier[key]["sha256"] != settings[key]["sha256"]]
    if differs:
        was = f"{earlier['model']['path']} on {earlier['input']['name']}"
        raise DataError(f"--resume: {path} was labelled {' and '.join(differs)} (recorded: {was}); "
                        "pass the same --model and input, or start over without --resume")
    for key in ("format", "text_column", *OPTIONAL, "raw_csv"):
        if earlier.get(key) != settings.get(key):
            raise DataError(bad_input("predict-resume-other-format").format(
                path=path, key=key.replace("_", "-"), earlier=earlier.get(key), now=settings.get(key)))
    for key in ("batch_size", "threads"):
        if earlier[key] != settings[key]:
            print(f"warning: --resume: the earlier run used --{key.replace('_', '-')} {earlier[key]}: the rows "
                  "from here on may differ from an uninterrupted run in their last digits", file=sys.stderr)
    size, rows, total = earlier["bytes_written"], earlier["rows_written"], settings["input"]["rows"]
    digest, counted = read_prefix(path, size, earlier["format"])
    if digest is None or (size and digest.hexdigest() != earlier["output_sha256"]):
        raise DataError(bad_input("predict-resume-output-changed").format(path=path, size=size))
    if counted != rows or digest.hexdigest() != earlier["output_sha256"]:
        held = "do not end with a whole row" if counted is None else f"hold {counted:,}"
        raise DataError(bad_input("predict-resume-rows-mismatch").format(path=path, record=record_path.name, rows=rows,
                                                                           size=size, held=held))
    if rows > total or (earlier["complete"] and rows != total):
        state = "complete" if earlier["complete"] else "incomplete"
        raise DataError(bad_input("predict-resume-complete-partial").format(
            path=path, rows=rows, plural="s" * (rows != 1), state=state, total=total))
    return earlier, digest
