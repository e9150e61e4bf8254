"""One writer per `predict --output FILE`: an exclusive flock(2) on a lock file of its own, `.FILE.predict-lock`
beside FILE's real path (symlinks resolved: `latest.csv -> out.csv` and `out.csv` share one lock), taken before
the input is read and held until the run ends. A second `predict` on the same FILE stops at once with one line
naming the holder's pid (written into the lock file), and touches neither FILE nor its progress record.

The lock file is predict's alone: a file of that name that holds anything but a pid (a user's file, the input) is
refused and left as it was, never truncated or removed; a symlink there is not followed. Any error taking the lock
(no room to write the pid, a file system without flock) is one line.

The kernel drops a flock when the last descriptor of its holder closes, however the holder ended: a run killed
with SIGKILL leaves at most the lock file, which the next run simply takes; there is no stale lock to remove. A run
that ends (finished, refused or interrupted) removes the lock file while it still holds it; a run that opened the
file just before then finds it gone from the path after locking and starts again on a new one. (Hard links to FILE
under other names are not detected: each name has its own lock.)"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from pathlib import Path

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.predict_output import bad_input


def lock_path(output: Path) -> Path:
    """`.FILE.predict-lock` beside FILE's real path (a name too long for the file system: a hash of it instead)."""
    real = Path(output).resolve()
    name = f".{real.name}.predict-lock"
    if len(os.fsencode(name)) > 255:
        name = f".{hashlib.sha256(os.fsencode(real.name)).hexdigest()[:32]}.predict-lock"
    return real.with_name(name)


class OutputLock:
    def __init__(self, output: Path, input_path: Path | None = None):
        self.output, self.path, self.fd = output, lock_path(output), None
        self.input_path = input_path

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> "OutputLock":
        if self.input_path is not None and _same_path(self.path, self.input_path):
            raise DataError(bad_input("predict-output-lock-is-input").format(output=self.output, lock=self.path.name))
        while self.fd is None:
            fd = None
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _holder(fd)
                    raise DataError(bad_input("predict-output-busy").format(output=self.output, pid=holder)) from None
                if not _same_file(fd, self.path):  # its holder finished and removed it meanwhile: take the new one
                    os.close(fd)
                    continue
                if not _pid_or_empty(fd):
                    raise DataError(bad_input("predict-output-lock-foreign").format(output=self.output, lock=self.path))
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd, fd = fd, None
            except OSError as exc:  # cannot create it, no flock here, no room for the pid
                raise DataError(bad_input("predict-output-lock-unmade").format(output=self.output, lock=self.path.name,
                                                                               reason=exc.strerror)) from None
            finally:
                if fd is not None:
                    os.close(fd)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink()  # while still held (see the module's docstring)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _same_path(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_path, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_path.st_dev, on_path.st_ino) == (held.st_dev, held.st_ino)


def _pid_or_empty(fd: int) -> bool:
    """What a predict lock file holds: nothing yet, or a pid and a newline."""
    return re.fullmatch(rb"(\d{1,20}\n?)?", os.pread(fd, 64, 0)) is not None


def _holder(fd: int) -> str:
    """The pid the holder wrote (it writes it right after locking: a moment's wait for it), or 'unknown'."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.01)
    return "unknown"
