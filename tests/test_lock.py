"""The committed locks: what `make` installs is exactly what pyproject.toml asks for, pinned and hashed, and a
machine the lock does not fit is stopped with one line (tools/check_lock.py; the catalogue's lock-mismatch)."""

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers import ROOT

REQ = ROOT / "requirements"
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:\\|$)", re.M)

sys.path.insert(0, str(ROOT / "tools"))
from check_lock import mismatch  # noqa: E402


def pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in ENTRY.findall(path.read_text())}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["ray"]]


@pytest.mark.parametrize("lock", ["cpu.lock", "cuda.lock"])
def test_lock_satisfies_pyproject(lock):
    locked = pins(REQ / lock)
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock} lacks {requirement}: run make lock"
        assert requirement.specifier.contains(Version(locked[name]), prereleases=True), \
            f"{lock} pins {name}=={locked[name]}, pyproject.toml asks {requirement}: run make lock"


def test_cpu_and_cuda_locks_pin_the_same_versions_but_torch_build():
    cpu, cuda = pins(REQ / "cpu.lock"), pins(REQ / "cuda.lock")
    assert cpu["torch"].endswith("+cpu") and Version(cpu["torch"]).public == cuda["torch"]
    shared = set(cpu) & set(cuda) - {"torch"}
    assert {n: cpu[n] for n in shared} == {n: cuda[n] for n in shared}
    assert set(cpu) - set(cuda) == set()  # the CUDA lock only adds CUDA's own packages


def test_every_entry_is_hashed_and_the_inputs_are_locked():
    for lock in REQ.glob("*.lock"):
        text = lock.read_text()
        entries = ENTRY.findall(text)
        assert entries and text.count("--hash=sha256:") >= len(entries), lock
        assert "make lock (for Python 3.11 on x86_64-manylinux_2_28)" in text, lock
    for source, lock in (("offline.in", "offline.lock"), ("uv.in", "uv.lock")):
        assert pins(REQ / source) == pins(REQ / lock), f"{lock} is stale: run make lock"
    # the SkyPilot launcher's lock resolves skypilot's dependencies too: its input's pin is among them
    assert pins(REQ / "sky.in").items() <= pins(REQ / "sky.lock").items(), "sky.lock is stale: run make lock"


def test_this_environment_is_the_lock():
    """The venv that runs the tests was installed from a lock: every pinned version is the one installed (so
    metrics/train/environment.json of a run records the lock's versions)."""
    torch = importlib.metadata.version("torch")
    locked = pins(REQ / ("cpu.lock" if torch.endswith("+cpu") else "cuda.lock")) | pins(REQ / "offline.lock")
    wrong = {}
    for name, version in locked.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or Version(installed) != Version(version):
            wrong[name] = (version, installed)
    assert not wrong, f"installed differs from the lock (name: (locked, installed)): {wrong}; run make install"


LINUX = ("glibc", "2.36")


@pytest.mark.parametrize("python, machine, system, libc, says", [
    ((3, 12), "x86_64", "Linux", LINUX, "was resolved for Python 3.11, this is Python 3.12: run `make lock`"),
    ((3, 11), "aarch64", "Linux", LINUX, "holds wheels for x86_64 Linux, this is aarch64 Linux"),
    ((3, 11), "arm64", "Darwin", ("", ""), "holds wheels for x86_64 Linux, this is arm64 Darwin"),
    ((3, 11), "x86_64", "Linux", ("glibc", "2.17"), "(glibc >= 2.28), this machine has glibc 2.17"),
    ((3, 11), "x86_64", "Linux", ("musl", "1.2"), "this machine has musl 1.2"),
])
def test_check_lock_names_what_does_not_fit(python, machine, system, libc, says):
    reason = mismatch(REQ / "cpu.lock", python, machine, system, libc)
    assert reason is not None and says in reason and "\n" not in reason, reason
    assert mismatch(REQ / "cpu.lock", (3, 11), "x86_64", "Linux", LINUX) is None


def test_check_lock_refuses_a_lock_without_its_header(tmp_path):
    (tmp_path / "x.lock").write_text("torch==2.13.0\n")
    assert "no 'make lock (for Python X.Y on PLATFORM)' header" in mismatch(tmp_path / "x.lock", (3, 11), "x86_64",
                                                                             "Linux", LINUX)
    assert "no such lock file" in mismatch(tmp_path / "none.lock", (3, 11), "x86_64", "Linux", LINUX)
