"""`predict`'s output, written as it is labelled: rows go out a chunk at a time, in input order, flushed, to stdout
or to `--output FILE`, which a killed run can continue (`--resume`).

FILE has one writer (labelling/output_lock.py: a second run on it stops at once, naming the first). Its progress
record, FILE.progress.json, is rewritten (atomically) at most once a second and when the run ends or is
interrupted: which model (sha256 of every file of its folder) labelled which input (sha256 of its bytes) in which
format, and how many rows and bytes of FILE are complete, with the sha256 of those bytes. `--resume` trusts none of
it unchecked (labelling/progress.py): it refuses a malformed record, another model, input or format, a FILE changed
since, or a record whose rows are not the rows those bytes hold; it cuts FILE after the recorded bytes (a chunk
written after the last record, or a row cut short by a kill, is labelled again) and carries on from the next row.
Chunks start at the same rows as in an uninterrupted run, so the result is the same file, byte for byte (with the
same --batch-size and --threads: they decide how texts share a forward pass, which moves the last digits).

No terminal escape reaches stdout raw. The table (a terminal format) shows control characters as visible symbols
(NUL as U+2400 "␀", ESC as U+241B "␛", the rest of C0 and DEL as their Control Pictures, C1 controls as "\\x9b"),
all but tab and the line breaks; CSV (unless --raw-csv) changes only what starts an ANSI escape sequence or cuts a
cell short (NUL "␀", ESC "␛", the C1 CSI as "\\x9b") and keeps other controls (a form feed round-trips), and its
cells that a spreadsheet would run as a formula get a leading apostrophe. JSON Lines escapes C0 controls (json's
own) and DEL and the C1 controls (as \\u007f ... \\u009f, which json.dumps leaves raw): the values parse the same.
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
from qlora_sentiment.problems.predict_output import bad_input
from qlora_sentiment.labelling.progress import RECORD_VERSION, check_resume

# predict labels --batch-size x CHUNK_BATCHES rows per call, from the same rows in every run (a resumed file is the
# same bytes) and on Ray's workers too (the same calls give the same numbers as single-process predict)
CHUNK_BATCHES = 8
COMMIT_SECONDS = 1.0
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection list
# the table: C0 controls but tab and the line breaks, and DEL, as their Control Pictures; C1 controls (0x9b is
# CSI) as \x..; CSV: only NUL, ESC and CSI (what starts a terminal escape or ends a C string); JSON Lines: DEL and C1
# as \u escapes
_VISIBLE = {**{c: 0x2400 + c for c in range(0x20) if chr(c) not in "\t\n\r"}, 0x7F: 0x2421,
            **{c: f"\\x{c:02x}" for c in range(0x80, 0xA0)}}
_CSV_VISIBLE = {c: _VISIBLE[c] for c in (0x00, 0x1B, 0x9B)}
_JSON_ESCAPED = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


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


def visible(text: str) -> str:
    """Control characters (NUL, ESC and the rest but tab and line breaks) as visible symbols: no terminal escape."""
    return text.translate(_VISIBLE)


def neutralise(cell: str) -> str:
    """NUL, ESC and CSI made visible; then a cell a spreadsheet would run as a formula (=, +, -, @, tab, CR
    first) gets a leading apostrophe."""
    cell = cell.translate(_CSV_VISIBLE)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


class Formatter:
    """Rows as JSON Lines, CSV (a header) or a table (a header line): the text of a header and of a chunk. An
    aspect model's rows have an aspect column (after text in CSV, before the text in the table), and an aspect
    file's (`numbered`) their input row first in CSV (JSON Lines: each row's keys as they come)."""

    def __init__(self, fmt: str, labels: list[str], raw_csv: bool = False, aspects: bool = False,
                 numbered: bool = False):
        self.fmt, self.labels, self.raw_csv, self.aspects, self.numbered = fmt, labels, raw_csv, aspects, numbered
        self.width = max(len("label"), *(len(lab) for lab in labels))

    def header(self) -> str:
        if self.fmt == "csv":
            return self._csv([[*(["row"] if self.numbered else []), "text", *(["aspect"] if self.aspects else []),
                               "label",
                               *[f"p_{lab}" for lab in self.labels]]])
        if self.fmt == "table":
            return (f"{'label':<{self.width}}  " + "  ".join(f"{lab[:8]:>8}" for lab in self.labels)
                    + ("  aspect: text\n" if self.aspects else "  text\n"))
        return ""

    def rows(self, rows: list[dict]) -> str:
        if self.fmt == "json":
            return "".join(json.dumps(r, ensure_ascii=False).translate(_JSON_ESCAPED) + "\n" for r in rows)
        if self.fmt == "csv":
            cell = (lambda text: text) if self.raw_csv else neutralise
            return self._csv([*([r["row"]] if self.numbered else []), cell(r["text"]),
                              *([cell(r["aspect"])] if self.aspects else []), cell(r["label"]),
                              *[f"{r['probabilities'][lab]:.6f}" for lab in self.labels]] for r in rows)
        lines = []
        for r in rows:
            text = visible(" ".join(r["text"].splitlines()))  # one table row per text, whatever line breaks it holds
            text = f"{visible(' '.join(r['aspect'].splitlines()))}: {text}" if self.aspects else text
            text = text if len(text) <= 70 else text[:69] + "…"
            lines.append(f"{r['label']:<{self.width}}  " + "  ".join(f"{r['probabilities'][lab]:>8.3f}"
                                                                      for lab in self.labels) + f"  {text}\n")
        return "".join(lines)

    @staticmethod
    def _csv(records) -> str:
        """Rows ending in "\\n"; written with "\\r\\n" as the terminator, so that a cell holding a lone "\\r" is
        quoted too (with "\\n" alone the csv module leaves it bare, and readers split the row there)."""
        out, lines = io.StringIO(), []
        writer = csv.writer(out, lineterminator="\r\n")
        for record in records:
            writer.writerow(record)
            lines.append(out.getvalue()[:-2] + "\n")
            out.seek(0)
            out.truncate()
        return "".join(lines)


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
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except BrokenPipeError:
                raise
            except OSError as exc:  # a full disk, /dev/full: one line, and nothing more tried at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise DataError(bad_input("predict-stdout-full").format(reason=exc.strerror, rows=self.rows_written)) \
                    from None
        self.rows_written += rows


def check_output_folder(path: Path, input_path: Path | None) -> None:
    """Before FILE's lock is taken: an --output that is a folder, in no folder, a device or the input is refused."""
    try:
        if path.is_dir():
            raise DataError(bad_input("predict-output-is-folder").format(path=path))
        if not path.parent.is_dir():
            raise DataError(bad_input("predict-output-no-folder").format(path=path, folder=path.parent))
        existed = path.exists()
        if existed and not path.is_file():
            raise DataError(bad_input("predict-output-not-a-file").format(path=path))
        if existed and input_path is not None and input_path.exists() and path.samefile(input_path):
            raise DataError(bad_input("predict-output-is-input").format(path=path))
    except OSError as exc:  # a name too long
        raise DataError(bad_input("predict-output-unwritable").format(path=path, reason=exc.strerror)) from None


def check_output_path(path: Path, input_path: Path | None) -> None:
    """Under FILE's lock, before the input is read: an --output that cannot be written is refused. A FILE made by
    asking is removed again: under the lock, so no other run can have opened it meanwhile."""
    try:
        existed = path.exists()
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666))
        if not existed:
            path.unlink()
    except OSError as exc:  # a name too long, no permission, a read-only disk
        raise DataError(bad_input("predict-output-unwritable").format(path=path, reason=exc.strerror)) from None


class FileOutput(Output):
    """--output FILE with its progress record; `resume` continues an earlier run's FILE."""

    def __init__(self, path: Path, identity: dict, resume: bool):
        super().__init__(identity)
        self.path, self.target = path, str(path)
        self.record_path = path.with_name(path.name + ".progress.json")
        self.digest, self.committed_rows = hashlib.sha256(), 0
        if resume and path.exists():
            self._continue()

    def _continue(self) -> None:
        earlier, self.digest = check_resume(self.path, self.record_path, self.settings)
        self.rows_written, self.bytes_written = earlier["rows_written"], earlier["bytes_written"]
        self.committed_rows = self.rows_written
        self.complete = earlier["complete"] and self.path.stat().st_size == self.bytes_written

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
        try:
            write_json(self.record_path, {**self.settings, "version": RECORD_VERSION,
                                          "rows_written": self.rows_written, "bytes_written": self.bytes_written,
                                          "output_sha256": self.digest.hexdigest(), "complete": self.complete})
        except OSError as exc:  # the earlier record stays whole (written atomically): --resume goes on from it
            raise DataError(bad_input("predict-record-disk-full").format(
                path=self.path, record=self.record_path.name, reason=exc.strerror, rows=self.committed_rows)) from None
        self.committed, self.committed_rows = time.monotonic(), self.rows_written

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
