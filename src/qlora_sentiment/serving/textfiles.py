"""Texts to label from a file or stdin: .txt (one per line), .csv/.tsv or .jsonl (a text column).

One output row per input row, in order, always: a text file and JSON Lines are split on "\\n" only (U+2028, form
feeds and other Unicode line breaks stay inside their text; a "\\r" before the "\\n" is dropped), CSV/TSV go through
the csv module (a quoted newline stays in its field). A blank row is an error, not skipped (only blank lines at the
very end are). Every error names the file and line, and comes before any model is loaded.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.serving.validation import MAX_TEXT_CHARS, NonFinite, describe, text_problem

SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")


def decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{name}: line {line} is not UTF-8 (byte {exc.start}); re-save it as UTF-8") from None


def _lines(raw: str) -> list[tuple[int, str]]:
    """(line number, line) split on "\\n" only, without a trailing "\\r", blank lines at the end left out."""
    lines = [(i, line[:-1] if line.endswith("\r") else line) for i, line in enumerate(raw.split("\n"), 1)]
    while lines and not lines[-1][1].strip():
        lines.pop()
    return lines


def _csv_rows(raw: str, name: str, column: str, delimiter: str) -> list[tuple[int, object]]:
    reader = csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter)
    records, start = [], 1
    try:
        for record in reader:
            records.append((start, record))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{name}: line {start}: not valid CSV ({exc})") from None
    while records and not records[-1][1]:  # blank lines at the end (a quoted "" is a row)
        records.pop()
    if not records:
        return []
    header = records[0][1]
    if column not in header:
        raise DataError(f"{name}: no column '{column}' (columns: {header}); use --text-column")
    index = header.index(column)
    return [(line, record[index] if index < len(record) else "") for line, record in records[1:]]


def _jsonl_rows(raw: str, name: str, column: str) -> list[tuple[int, object]]:
    rows = []
    for i, line in _lines(raw):
        if not line.strip():
            raise DataError(f"{name}: line {i}: empty line; every line must be a JSON object")
        try:
            row = json.loads(line, parse_constant=NonFinite.parse)
        except RecursionError:
            raise DataError(f"{name}: line {i} is not JSON (nested too deeply)") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {i} is not JSON ({exc.msg} at character {exc.pos + 1})") from None
        if not isinstance(row, dict) or column not in row:
            raise DataError(f"{name}: line {i} has no '{column}' field; use --text-column")
        value = row[column]
        if not isinstance(value, str):
            raise DataError(f"{name}: line {i}: '{column}' is {describe(value)}, not a string")
        rows.append((i, value))
    return rows


def parse_texts(raw: str, name: str, kind: str = ".txt", column: str = "text",
                max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    """The texts of decoded `raw` (`kind`: one of SUFFIXES), or one DataError naming `name` and the line."""
    if kind == ".txt":
        rows = list(_lines(raw))
    elif kind in (".csv", ".tsv"):
        rows = _csv_rows(raw, name, column, "\t" if kind == ".tsv" else ",")
    elif kind == ".jsonl":
        rows = _jsonl_rows(raw, name, column)
    else:
        raise DataError(f"{name}: unsupported file type '{kind}'; use .txt, .csv, .tsv or .jsonl")
    for line, text in rows:
        problem = text_problem(text.strip() if isinstance(text, str) else text, max_chars)
        if problem:
            raise DataError(f"{name}: line {line}: {problem}")
    if not rows:
        raise DataError(f"{name}: no texts")
    return [text.strip() for _, text in rows]


def read_texts(path: str | Path, column: str = "text", max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{path.suffix.lower()}'; use .txt, .csv, .tsv or .jsonl")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_texts(decode(data, str(path)), str(path), path.suffix.lower(), column, max_chars)
