"""Texts to label from a file or stdin: .txt (one per line), .csv/.tsv, .jsonl or .parquet (a text column; Parquet
by its own layout, labelling/parquetrows.py: what is said of lines below is of the others).

One output row per input row, in order, always: a text file and JSON Lines are split on "\\n" only (U+2028, form
feeds and other Unicode line breaks stay inside their text; a "\\r" before the "\\n" is dropped), CSV/TSV go through
the csv module (a quoted newline stays in its field). A blank row is an error, not skipped (only blank lines at the
very end are), and so is a JSON object that gives a key twice (as the web API refuses it). Every error names the
file and line. A text is scored without the whitespace around it.

Nothing is read whole: `TextFile.scan` reads the input once, line by line, checking every row, counting the rows and
hashing the bytes while keeping none of them, so every error comes before any model loads or any output is opened,
whatever the size of the input; `texts()` then reads it again, lazily, while the rows are labelled (the rows the
first pass counted, no more), hashing what it reads, and `unchanged()` at the end hashes the rest, and the whole
input again, and compares: an input appended to or edited during the run is caught before the run calls itself
complete. stdin cannot be read twice: the first pass copies it into an anonymous temporary file (on disk, not in
memory).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.predict import bad_input
from qlora_sentiment.problems.aspect_files import bad_input as aspect_problem
from qlora_sentiment.api.validation import (MAX_TEXT_CHARS, DuplicateKey, NonFinite, describe,
                                            no_duplicate_keys, text_problem)

SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")
KINDS = ".txt, .csv, .tsv, .jsonl or .parquet"
MISSING = object()  # a JSON Lines row without the aspect column's key
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")  # where a "\r" not followed by "\n" ends a line (the csv module's view)


def _decoded(raw_lines: Iterable[bytes], name: str) -> Iterator[tuple[int, str]]:
    """(line number, line with its "\\n") of lines split on b"\\n", decoded as UTF-8 (a BOM at the very start
    dropped). Decoding line by line is exact: byte 0x0A is never part of a multi-byte character."""
    offset = 0  # bytes before the line, after a leading BOM (what the error's byte counts)
    for number, raw in enumerate(raw_lines, 1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(bad_input("predict-stdin-not-utf8").format(name=name, line=number,
                                                                         byte=offset + exc.start)) from None
        offset += len(raw)
        yield number, line


def _blank_tail(items: Iterable, blank: Callable, fail: Callable) -> Iterator:
    """`items` less the blank ones at the very end. A blank item is held back until a non-blank one follows; then
    `fail(first blank item)` raises (a blank row inside the input is an error), so only that one is kept."""
    held = None
    for item in items:
        if blank(item):
            held = item if held is None else held
            continue
        if held is not None:
            fail(held)
        yield item


def _lines(lines: Iterable[tuple[int, str]], fail: Callable) -> Iterator[tuple[int, str]]:
    """Lines without their "\\n" or a "\\r" before it; blank lines at the end left out, one inside: `fail`."""
    def strip(item):
        number, line = item
        line = line[:-1] if line.endswith("\n") else line
        return number, line[:-1] if line.endswith("\r") else line

    return _blank_tail(map(strip, lines), lambda item: not item[1].strip(), fail)


def _txt_rows(lines, name: str, column: str, extra=None):
    def fail(item):
        raise DataError(bad_input("predict-empty-row").format(name=name, line=item[0]))

    return ((line, text, None) for line, text in _lines(lines, fail))


def _csv_rows(lines, name: str, column: str, extra=None, delimiter: str = ","):
    # "\n"-lines split again at a lone "\r", as a file opened with newline="" is: the csv module's line numbers
    reader = csv.reader((part for _, line in lines for part in _LONE_CR.split(line) if part), delimiter=delimiter)

    def records():
        start = 1
        try:
            for record in reader:
                yield start, record
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{name}: line {start}: not valid CSV ({exc})") from None

    index = None
    wanted = [(column, "--text-column"), *([extra] if extra else [])]  # extra: (the aspect column, its flag)

    def fail(item):
        if index is None:  # a blank header: it names no column
            raise DataError(f"{name}: no column '{column}' (columns: []); use --text-column")
        raise DataError(bad_input("predict-empty-row").format(name=name, line=item[0]))

    for line, record in _blank_tail(records(), lambda item: not item[1], fail):  # a quoted "" is a row
        if index is None:
            for col, flag in wanted:
                if col not in record:
                    raise DataError(_no_column(name, col, record, flag))
            index = [record.index(col) for col, _ in wanted]
            continue
        cells = [record[i] if i < len(record) else "" for i in index]
        yield line, cells[0], cells[1] if extra else None


def _no_column(name: str, column: str, columns: list, flag: str, line: int = 1) -> str:
    if flag == "--text-column":
        return f"{name}: no column '{column}' (columns: {columns}); use --text-column"
    return aspect_problem("aspect-file-column-missing").format(name=name, line=line, column=column, columns=columns,
                                                          flag=flag)


def _tsv_rows(lines, name: str, column: str, extra=None):
    return _csv_rows(lines, name, column, extra, "\t")


def _jsonl_rows(lines, name: str, column: str, extra=None):
    """(line, text, the extra column's value: any JSON, MISSING where the row has no such key)."""
    def fail(item):
        raise DataError(f"{name}: line {item[0]}: empty line; every line must be a JSON object")

    first = True
    for i, line in _lines(lines, fail):
        try:
            row = json.loads(line, parse_constant=NonFinite.parse, object_pairs_hook=no_duplicate_keys)
        except DuplicateKey as exc:
            raise DataError(f"{name}: line {i}: {exc}") from None
        except RecursionError:
            raise DataError(f"{name}: line {i} is not JSON (nested too deeply)") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {i} is not JSON ({exc.msg} at character {exc.pos + 1})") from None
        if not isinstance(row, dict) or column not in row:
            raise DataError(f"{name}: line {i} has no '{column}' field; use --text-column")
        value = row[column]
        if not isinstance(value, str):
            raise DataError(bad_input("predict-nan-text").format(name=name, line=i, column=column,
                                                                 what=describe(value)))
        if extra and first and extra[0] not in row:  # a later row without it: a row without aspects
            raise DataError(_no_column(name, extra[0], list(row), extra[1], i))
        first = False
        yield i, value, row.get(extra[0], MISSING) if extra else None


def _hashed(raw_lines: Iterable[bytes], digest) -> Iterator[bytes]:
    for raw in raw_lines:
        digest.update(raw)
        yield raw


_READERS = {".txt": _txt_rows, ".csv": _csv_rows, ".tsv": _tsv_rows, ".jsonl": _jsonl_rows}


def iter_texts(raw_lines: Iterable[bytes], name: str, kind: str = ".txt", column: str = "text",
               max_chars: int = MAX_TEXT_CHARS, stream: IO[bytes] | None = None) -> Iterator[str]:
    """The texts (stripped) of an input's b"\\n"-split lines, lazily, or one DataError naming `name` and the line:
    the first bad row in the input's order."""
    for line, text, _ in rows_of(raw_lines, name, kind, column, max_chars, stream=stream):
        yield text


def rows_of(raw_lines: Iterable[bytes], name: str, kind: str, column: str, max_chars: int = MAX_TEXT_CHARS,
            extra: tuple[str, str] | None = None, stream: IO[bytes] | None = None) -> Iterator[tuple[int, str, object]]:
    """(line, text stripped and checked, the `extra` column's value as read) of an input's rows, lazily. `extra`:
    (column, the flag that names it), a second column (an aspect file's). Parquet (`stream`, the file: it is read
    by its own layout, not by lines) has its bytes, `raw_lines`, hashed whole first."""
    if kind == ".parquet":
        from qlora_sentiment.labelling.parquetrows import parquet_rows

        for _ in raw_lines:
            pass
        rows = parquet_rows(stream, name, column, extra, _no_column)
    elif kind in _READERS:
        rows = _READERS[kind](_decoded(raw_lines, name), name, column, extra)
    else:
        raise DataError(f"{name}: unsupported file type '{kind}'; use {KINDS}")
    for line, text, value in rows:
        text = text.strip()
        problem = text_problem(text, max_chars)
        if problem:
            raise DataError(f"{name}: line {line}: {problem}")
        yield line, text, value


@dataclass
class TextFile:
    """A checked input: its name in messages, its rows, the sha256 of its bytes; `texts()` reads it again."""

    name: str
    kind: str
    column: str
    stream: IO[bytes]  # the file, kept open between the passes (a file replaced meanwhile is not mixed in)
    rows: int = 0
    sha256: str = ""
    path: Path | None = None
    max_chars: int = MAX_TEXT_CHARS

    @classmethod
    def open(cls, path: str | Path, column: str = "text", max_chars: int = MAX_TEXT_CHARS, **fields) -> "TextFile":
        """`fields`: a subclass's own (aspectfiles.AspectFile's columns and model record)."""
        path = Path(path)
        kind = path.suffix.lower()
        if kind not in SUFFIXES:
            raise DataError(f"{path}: unsupported file type '{kind}'; use {KINDS}")
        try:
            if not path.is_file():
                raise DataError(f"{path}: no such file")
            stream = path.open("rb")
        except OSError as exc:
            raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
        text_file = cls(str(path), kind, column, stream, path=path, **fields)
        try:
            return text_file.scan(max_chars)
        except DataError:
            stream.close()
            raise

    @classmethod
    def from_stream(cls, source: IO[bytes], name: str = "stdin", max_chars: int = MAX_TEXT_CHARS) -> "TextFile":
        """One text per line from a stream read once (stdin): copied to an unnamed temporary file on the way."""
        spool = tempfile.TemporaryFile()
        blank = True  # only ASCII whitespace, or nothing: "no texts" rather than "stdin: no texts"

        def copied():
            nonlocal blank
            for raw in source:
                spool.write(raw)
                blank = blank and not raw.strip()
                yield raw

        text_file = cls(name, ".txt", "text", spool)
        try:
            text_file.scan(max_chars, copied())
        except DataError:
            spool.close()
            if blank:
                raise DataError("no texts: give them as arguments, with --file, or one per line on stdin") from None
            raise
        return text_file

    def scan(self, max_chars: int = MAX_TEXT_CHARS, raw_lines: Iterable[bytes] | None = None) -> "TextFile":
        """The first pass: every row checked and counted, the bytes hashed; nothing kept."""
        digest = hashlib.sha256()
        try:
            self.max_chars = max_chars
            self.rows = sum(1 for _ in self.items(_hashed(raw_lines if raw_lines is not None else self.stream, digest)))
        except OSError as exc:
            raise DataError(f"{self.name}: cannot read it ({exc.strerror})") from None
        if not self.rows:
            raise DataError(f"{self.name}: no texts")
        self.sha256 = digest.hexdigest()
        return self

    def items(self, raw_lines: Iterable[bytes]) -> Iterator:
        """What one row of output is made of, in order: here the texts (labelling/aspectfiles.py: pairs)."""
        return iter_texts(raw_lines, self.name, self.kind, self.column, self.max_chars, self.stream)

    def texts(self, skip: int = 0) -> Iterator[str]:
        """The texts again, lazily, from row `skip` on (0-based) to the last row the first pass counted; the bytes
        read are hashed for `unchanged()`."""
        self.stream.seek(0)
        self._again, self._again_size = hashlib.sha256(), 0

        def hashed():
            for raw in _hashed(self.stream, self._again):
                self._again_size += len(raw)
                yield raw

        rows = self.items(hashed())
        return itertools.islice(rows, skip, self.rows)

    def unchanged(self) -> bool:
        """After `texts()`: whether the bytes the second pass read (to the end) and the input's bytes now are both
        the ones the first pass hashed: not appended to, cut or edited meanwhile, before or after it was read."""
        now = hashlib.sha256()
        try:
            self.stream.seek(self._again_size)  # after the bytes hashed (Parquet's reader moves about the file)
            for block in iter(lambda: self.stream.read(1 << 20), b""):
                self._again.update(block)
            self.stream.seek(0)
            for block in iter(lambda: self.stream.read(1 << 20), b""):
                now.update(block)
        except OSError:
            return False
        return self._again.hexdigest() == now.hexdigest() == self.sha256

    def close(self) -> None:
        self.stream.close()
