"""Fixtures: a tiny random llama (real architecture, real tokenizer files), the subprocess environment, a tiny
project. Plain helpers live in helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# One torch thread per test process: oversubscribing 2 cores is far slower than using one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import build_tiny_llama, make_project  # noqa: E402

@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def python_bin_env() -> dict:
    """Environment for subprocesses: this interpreter's bin first on PATH (dvc runs `python stages/...`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "ci"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "ci@example.invalid"
    return env


@pytest.fixture()
def project(tmp_path, tiny_llama, python_bin_env):
    """A tiny project in a temporary git repo (see helpers.make_project) and its subprocess environment."""
    return make_project(tmp_path / "project", tiny_llama, python_bin_env), python_bin_env
