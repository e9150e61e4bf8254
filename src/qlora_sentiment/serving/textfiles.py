"""Texts to label from a file: .txt (one per line), .csv/.tsv or .jsonl (a text column). Errors name file and row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from qlora_sentiment.core.errors import DataError


def read_texts(path: str | Path, column: str = "text") -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        texts = [(i, line.strip()) for i, line in enumerate(raw.splitlines(), 1) if line.strip()]
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(raw.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        if column not in (reader.fieldnames or []):
            raise DataError(f"{path}: no column '{column}' (columns: {reader.fieldnames}); use --text-column")
        texts = [(i, (row[column] or "").strip()) for i, row in enumerate(reader, 2)]
    elif suffix == ".jsonl":
        texts = []
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {i} is not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or column not in row:
                raise DataError(f"{path}: line {i} has no '{column}' field; use --text-column")
            texts.append((i, str(row[column]).strip()))
    else:
        raise DataError(f"{path}: unsupported file type '{suffix}'; use .txt, .csv, .tsv or .jsonl")
    for line, text in texts:
        if not text:
            raise DataError(f"{path}: {'row' if suffix in ('.csv', '.tsv') else 'line'} {line}: empty text")
    if not texts:
        raise DataError(f"{path}: no texts in the file")
    return [t for _, t in texts]
