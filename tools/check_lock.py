"""Before an install: does this machine match the lock? One line and exit 2 if not (no half-made venv).

The lock's header says what `make lock` resolved it for ("make lock (for Python 3.11 on x86_64-manylinux_2_28)");
every pinned wheel was chosen for that Python and platform, so another Python or CPU would fail deep inside the
installer, or quietly build sdists. Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

HEADER = re.compile(r"make lock \(for Python (\d+)\.(\d+) on (\w+?)-manylinux_(\d+)_(\d+)\)")


def mismatch(lock: Path, python: tuple[int, int], machine: str, system: str, libc: tuple[str, str]) -> str | None:
    """The one-line reason this machine cannot install `lock`, or None."""
    if not lock.is_file():
        return f"{lock}: no such lock file; run `make lock` to create it"
    found = HEADER.search(lock.read_text(encoding="utf-8", errors="replace")[:2000])
    if found is None:
        return f"{lock}: no 'make lock (for Python X.Y on PLATFORM)' header; regenerate it with `make lock`"
    want_py = (int(found[1]), int(found[2]))
    want_arch, want_glibc = found[3], (int(found[4]), int(found[5]))
    refresh = f"run `make lock` with this Python to refresh {lock}, or use PYTHON=python{want_py[0]}.{want_py[1]}"
    if python != want_py:
        return (f"{lock} was resolved for Python {want_py[0]}.{want_py[1]}, this is Python "
                f"{python[0]}.{python[1]}: {refresh}")
    if system != "Linux" or machine != want_arch:
        return (f"{lock} holds wheels for {want_arch} Linux, this is {machine} {system}: no wheel of the lock fits; "
                f"run `make lock LOCK_PLATFORM=<your platform>` (uv's --python-platform names) on this machine")
    name, version = libc
    have = tuple(int(x) for x in re.findall(r"\d+", version)[:2]) if name == "glibc" else None
    if have is None or len(have) < 2 or have < want_glibc:
        return (f"{lock} holds manylinux_{want_glibc[0]}_{want_glibc[1]} wheels (glibc >= "
                f"{want_glibc[0]}.{want_glibc[1]}), this machine has {name or 'no glibc'} {version}: "
                f"run `make lock LOCK_PLATFORM=<your platform>` on this machine")
    return None


def main(argv: list[str]) -> int:
    reason = mismatch(Path(argv[0]), sys.version_info[:2], platform.machine(), platform.system(),
                      platform.libc_ver())
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
