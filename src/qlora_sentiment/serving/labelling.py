"""`predict`'s output, written as it is labelled: rows go out a chunk at a time, in input order, flushed, to stdout
or to `--output FILE`, which a killed run can continue (`--resume`).

FILE's progress record, FILE.progress.json, is rewritten (atomically) at most once a second and when the run
ends or is interrupted: which model (sha256 of every file of its folder) labelled which input (sha256 of its bytes)
in which format, and how many rows and bytes of FILE are complete, with the sha256 of those bytes. `--resume`
refuses another model, input or format, or a FILE changed since; it cuts FILE after the recorded bytes (a chunk
written after the last record, or a row cut short by a kill, is labelled again) and carries on from the next row.
Chunks start at the same rows as in an uninterrupted run, so the result is the same file, byte for byte (with the
same --batch-size and --threads: they decide how texts share a forward pass, which moves the last digits).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.core.io import write_json

RECORD_VERSION = 1
# predict labels --batch-size x CHUNK_BATCHES rows per call, from the same rows in every run (a resumed file is the
# same bytes) and on Ray's workers too (the same calls give the same numbers as single-process predict)
CHUNK_BATCHES = 8
COMMIT_SECONDS = 1.0
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection list


def model_fingerprint(folder: str | Path) -> str:
    """sha256 over the names and bytes of every file in an adapter or export folder (weights, record, tokenizer)."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def neutralise(cell: str) -> str:
    """A cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


class Formatter:
    """Rows as JSON Lines, CSV (a header) or a table (a header line): the text of a header and of a chunk. An
    aspect model's rows have an aspect column (after text in CSV, before the text in the table)."""

    def __init__(self, fmt: str, labels: list[str], raw_csv: bool = False, aspects: bool = False):
        self.fmt, self.labels, self.raw_csv, self.aspects = fmt, labels, raw_csv, aspects
        self.width = max(len("label"), *(len(lab) for lab in labels))

    def header(self) -> str:
        if self.fmt == "csv":
            return self._csv([["text", *(["aspect"] if self.aspects else []), "label",
                               *[f"p_{lab}" for lab in self.labels]]])
        if self.fmt == "table":
            return (f"{'label':<{self.width}}  " + "  ".join(f"{lab[:8]:>8}" for lab in self.labels)
                    + ("  aspect: text\n" if self.aspects else "  text\n"))
        return ""

    def rows(self, rows: list[dict]) -> str:
        if self.fmt == "json":
            return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if self.fmt == "csv":
            cell = (lambda text: text) if self.raw_csv else neutralise
            return self._csv([cell(r["text"]), *([cell(r["aspect"])] if self.aspects else []), cell(r["label"]),
                              *[f"{r['probabilities'][lab]:.6f}" for lab in self.labels]] for r in rows)
        lines = []
        for r in rows:
            text = " ".join(r["text"].splitlines())  # one table row per text, whatever line breaks it holds
            text = f"{' '.join(r['aspect'].splitlines())}: {text}" if self.aspects else text
            text = text if len(text) <= 70 else text[:69] + "…"
            lines.append(f"{r['label']:<{self.width}}  " + "  ".join(f"{r['probabilities'][lab]:>8.3f}"
                                                                      for lab in self.labels) + f"  {text}\n")
        return "".join(lines)

    @staticmethod
    def _csv(records) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(records)
        return out.getvalue()


class Output:
    """Where the rows go. `rows_written` rows (and `bytes_written` bytes) are complete; `open` starts writing."""

    def __init__(self, formatter_settings: dict):
        self.settings = formatter_settings
        self.rows_written = self.bytes_written = 0
        self.target = "stdout"
        self.complete = False

    def open(self, formatter: Formatter) -> None:
        self.formatter = formatter
        self._write(formatter.header(), 0)

    def write(self, rows: list[dict]) -> None:
        """One chunk's rows, written and flushed together (the caller holds signals off meanwhile)."""
        self._write(self.formatter.rows(rows), len(rows))

    def finish(self) -> None:
        self.complete = True

    def stop(self) -> None:
        """Interrupted: keep what is complete."""

    def _write(self, text: str, rows: int) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
        self.rows_written += rows


def check_output_path(path: Path, input_path: Path | None) -> None:
    """Before the input is read: an --output that cannot be written, or not beside a progress record, is refused."""
    try:
        if path.is_dir():
            raise DataError(f"--output {path}: is a folder; name a file")
        if not path.parent.is_dir():
            raise DataError(f"--output {path}: no folder {path.parent}; make it first")
        existed = path.exists()
        if existed and not path.is_file():
            raise DataError(f"--output {path}: not a regular file; write to stdout (no --output) for pipes and "
                            "devices")
        if existed and input_path is not None and input_path.exists() and path.samefile(input_path):
            raise DataError(f"--output {path} is the input file; name another file")
        # can it be written? (a FILE made by asking is removed again)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666))
        if not existed:
            path.unlink()
    except OSError as exc:  # a name too long, no permission, a read-only disk
        raise DataError(f"--output {path}: cannot write it ({exc.strerror})") from None


class FileOutput(Output):
    """--output FILE with its progress record; `resume` continues an earlier run's FILE."""

    def __init__(self, path: Path, identity: dict, resume: bool):
        super().__init__(identity)
        self.path, self.target = path, str(path)
        self.record_path = path.with_name(path.name + ".progress.json")
        self.digest = hashlib.sha256()
        if resume and path.exists():
            self._continue()

    def _continue(self) -> None:
        earlier = self._read_record()
        differs = [what for what, key in (("by another model", "model"), ("from other input", "input"))
                   if earlier[key]["sha256"] != self.settings[key]["sha256"]]
        if differs:
            was = f"{earlier['model']['path']} on {earlier['input']['name']}"
            raise DataError(f"--resume: {self.path} was labelled {' and '.join(differs)} (recorded: {was}); "
                            "pass the same --model and input, or start over without --resume")
        for key in ("format", "text_column", "raw_csv"):
            if earlier[key] != self.settings[key]:
                raise DataError(f"--resume: {self.path} was written with {key.replace('_', '-')} {earlier[key]!r}, "
                                f"not {self.settings[key]!r}; pass the same --format, --text-column and --raw-csv")
        for key in ("batch_size", "threads"):
            if earlier[key] != self.settings[key]:
                print(f"warning: --resume: the earlier run used --{key.replace('_', '-')} {earlier[key]}: the rows "
                      "from here on may differ from an uninterrupted run in their last digits", file=sys.stderr)
        self._check_prefix(earlier["bytes_written"], earlier["output_sha256"])
        self.rows_written, self.bytes_written = earlier["rows_written"], earlier["bytes_written"]
        self.complete = earlier["complete"] and self.path.stat().st_size == self.bytes_written

    def _read_record(self) -> dict:
        keys = {"version", "model", "input", "format", "text_column", "raw_csv", "batch_size", "threads",
                "rows_written", "bytes_written", "output_sha256", "complete"}
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
            why = None if isinstance(record, dict) and keys <= record.keys() and record["version"] == RECORD_VERSION \
                else "not a progress record of this version"
        except FileNotFoundError:
            why = "missing"
        except (OSError, ValueError) as exc:
            why = f"unreadable: {exc}"
        if why:
            raise DataError(f"--resume: {self.path} has no usable progress record ({self.record_path.name}: {why}); "
                            "start over without --resume")
        return record

    def _check_prefix(self, size: int, sha256: str) -> None:
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(min(1 << 20, size - handle.tell())), b""):
                self.digest.update(block)
        if self.path.stat().st_size < size or self.digest.hexdigest() != sha256:
            raise DataError(f"--resume: {self.path} is not what predict wrote (its first {size:,} bytes changed "
                            "since); start over without --resume")

    def open(self, formatter: Formatter) -> None:
        self._commit()  # first: a FILE without a record is never left behind
        try:
            self.handle = self.path.open("r+b" if self.bytes_written else "wb")
            self.handle.seek(self.bytes_written)
            self.handle.truncate()  # what came after the last record: a chunk labelled again now
        except OSError as exc:
            raise DataError(f"--output {self.path}: cannot write it ({exc.strerror})") from None
        self.formatter, self.committed = formatter, time.monotonic()
        if not self.bytes_written:
            self._write(formatter.header(), 0)

    def _write(self, text: str, rows: int) -> None:
        data = text.encode("utf-8")
        try:
            self.handle.write(data)
            self.handle.flush()
        except OSError as exc:
            raise DataError(f"--output {self.path}: cannot write it ({exc.strerror}); {self.rows_written:,} rows "
                            "are complete: free the space and continue with --resume") from None
        self.digest.update(data)
        self.rows_written += rows
        self.bytes_written += len(data)
        if time.monotonic() - self.committed >= COMMIT_SECONDS:
            self._commit()

    def _commit(self) -> None:
        write_json(self.record_path, {**self.settings, "version": RECORD_VERSION, "rows_written": self.rows_written,
                                      "bytes_written": self.bytes_written, "output_sha256": self.digest.hexdigest(),
                                      "complete": self.complete})
        self.committed = time.monotonic()

    def finish(self) -> None:
        self.complete = True
        self.stop()

    def stop(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None:
            handle.close()
            self._commit()


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: a BaseException, as KeyboardInterrupt, so that no `except Exception` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Signals:
    """Within the block, SIGINT (Ctrl-C) and SIGTERM raise Interrupted in the main thread at once, except inside
    `deferred()` (a chunk being written and recorded), which finishes first. A second signal is ignored while the
    first is handled. Python runs signal handlers in the main thread whichever thread the signal reached."""

    def __enter__(self) -> "Signals":
        self.received = self.deferring = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.received:
            return
        self.received = signum
        if not self.deferring:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.received:
            raise Interrupted(self.received)
