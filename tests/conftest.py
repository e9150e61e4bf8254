"""Fixtures: a tiny random llama (real architecture, real tokenizer files), the subprocess environment, a tiny
project. Plain helpers live in helpers.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# One torch thread per test process: oversubscribing 2 cores is far slower than using one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The stages cap CPU math at AVX2 before torch loads (runtime.cpu_isa, core/cpu_isa.py); tests that call them
# in-process import torch first, so the cap is set here, for this process and the subprocesses alike.
from qlora_sentiment.core.cpu_isa import PINS

for _name, _value in PINS["avx2"].items():
    os.environ.setdefault(_name, _value)

from helpers import (  # noqa: E402
    RESUMABLE, aspect_overrides, build_tiny_llama, make_project, run, serving, subprocess_env, train_tiny,
)


# The fast tier (`make test-fast`: `-m "not slow"`) leaves out every test that trains, serves or runs a pipeline:
# those that take one of these fixtures are marked slow here, the others that do it themselves carry the mark.
HEAVY_FIXTURES = {"tiny_llama", "trained", "trained_aspects", "server", "project", "reproduced", "reproduced_project",
                  "exports",  # test_export_tokenizers: every GPU family's real tokenizer, exported
                  "family_model",  # a GPU preset family's random model (its base folder)
                  "sky_python"}  # test_cloud: SkyPilot's own venv (`make sky`)


# The longest tests first (seconds on the Zen 3, `make test`'s --durations), the rest of the slow tier next, the
# fast tier last. pytest-xdist's worksteal gives each worker a contiguous half of this order and steals from its
# end: with the order dealt out like cards (see below), both workers start on long tests and finish on short ones,
# instead of one worker running a 4-minute test alone at the end while the other idles.
LONGEST = ["test_cloud.py::test_the_task_sets_up", "test_experiments.py::test_queue_search",
           "test_gpu_presets.py::test_gpu_preset_pipeline_on_cpu", "test_resume.py::test_a_second_fresh_run",
           "test_base_model.py::test_offline_gguf",
           "test_gpu_presets.py::test_gpu_preset_stages_in_one_process", "test_distributed.py::test_two_cpu_processes",
           "test_bench.py::test_bench_on_a_random_mistral", "test_pipeline.py::test_repro_outputs",
           "test_experiments.py::test_three_class", "test_aspects.py::test_mams_preset_end_to_end",
           "test_prompts.py::test_training_scoring_and_export", "test_export_tokenizers.py::test_plain_auto_tokenizer"]


def _rank(item) -> int:
    name = item.nodeid.split("/")[-1]
    longest = [i for i, prefix in enumerate(LONGEST) if name.startswith(prefix)]
    return longest[0] if longest else len(LONGEST) + (0 if item.get_closest_marker("slow") else 1)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    ordered = sorted(items, key=_rank)  # stable: files and parameters keep their order within a rank
    items[:] = ordered[0::2] + ordered[1::2]  # dealt to the two workers' halves, each from its longest down


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def python_bin_env() -> dict:
    """Environment for subprocesses: this interpreter's bin first on PATH (dvc runs `python stages/...`)."""
    return subprocess_env()


@pytest.fixture()
def project(tmp_path, tiny_llama, python_bin_env):
    """A tiny project in a temporary git repo (see helpers.make_project) and its subprocess environment."""
    return make_project(tmp_path / "project", tiny_llama, python_bin_env), python_bin_env


def _shared_folder(tmp_path_factory, worker_id) -> Path:
    """The test run's temporary folder common to every xdist worker (the worker's own one without xdist)."""
    return tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent


@pytest.fixture(scope="session")
def family_model(tmp_path_factory, worker_id):
    """family -> tools/random_model.py's tiny random model of that family (its real tokenizer), built once per test
    run and shared by the xdist workers (a file lock), read-only: ~10-20 s per build here, and the GPU presets,
    test_export_tokenizers and test_prompts' families are the same five."""
    import sys

    from filelock import FileLock

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from random_model import build

    common = _shared_folder(tmp_path_factory, worker_id) / "families"
    common.mkdir(exist_ok=True)

    def model(family: str) -> Path:
        folder = common / family
        with FileLock(str(common / f"{family}.lock")):
            if not folder.is_dir():
                shutil.rmtree(common / f"{family}.partial", ignore_errors=True)  # a worker that failed half-way
                os.replace(build(family, common / f"{family}.partial"), folder)
        return folder

    return model


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory, tiny_llama, worker_id) -> Path:
    """One tiny project after a whole `dvc repro`, committed with its dvc.lock: made once per test run and
    shared by the xdist workers (a file lock in the run's common temporary folder), read-only. Tests that
    change it take a copy (`reproduced_project`). It is a fresh run like any other: tests/test_resume.py compares
    a second fresh run, killed in training and resumed, with it (hence RESUMABLE's 30 steps)."""
    from filelock import FileLock

    common = _shared_folder(tmp_path_factory, worker_id)
    repo = common / "reproduced"
    with FileLock(str(common / "reproduced.lock")):
        if not (common / "reproduced.done").exists():
            env = subprocess_env()
            shutil.rmtree(repo, ignore_errors=True)  # a worker that failed half-way
            make_project(repo, tiny_llama, env, **RESUMABLE)
            run(["dvc", "repro"], repo, env)
            run(["git", "add", "-A"], repo, env)
            run(["git", "commit", "-qm", "baseline run"], repo, env)
            (common / "reproduced.done").touch()
    return repo


@pytest.fixture()
def reproduced_project(reproduced, tmp_path, python_bin_env):
    """A private copy of `reproduced` (git history, DVC cache and outputs), and its subprocess environment."""
    copy = tmp_path / "project"
    shutil.copytree(reproduced, copy, symlinks=True)
    return copy, python_bin_env


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_llama):
    """A tiny adapter (a few steps), its base folder and a merged export beside it."""
    root = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    try:
        params, records, result = train_tiny(root, tiny_llama, **{"train.max_steps": 4})
    finally:
        os.chdir(cwd)
    from qlora_sentiment.model.export import merge_adapter, write_export
    from qlora_sentiment.model.record import read_record

    adapter = root / "adapter"
    record = read_record(adapter)
    from qlora_sentiment.model.base import load_ref

    merged, tokenizer = merge_adapter(adapter, load_ref(root / "base"), record)
    write_export(merged, tokenizer, record, root / "export", {"n": 10, "accuracy": 0.9, "macro": {"f1": 0.9}}, adapter)
    return root


@pytest.fixture(scope="session")
def trained_aspects(tmp_path_factory, tiny_llama):
    """A tiny aspect_term adapter (classifier head, as the default), its base and its export (with ONNX):
    SimpleNamespace(root, params, records, record)."""
    from types import SimpleNamespace

    from qlora_sentiment.model.base import load_ref
    from qlora_sentiment.model.export import merge_adapter, write_export
    from qlora_sentiment.model.record import read_record

    root = tmp_path_factory.mktemp("aspects")
    cwd = os.getcwd()
    try:
        params, records, _ = train_tiny(root, tiny_llama, **aspect_overrides(root / "absa"), **{"train.max_steps": 4})
    finally:
        os.chdir(cwd)
    record = read_record(root / "adapter")
    merged, tokenizer = merge_adapter(root / "adapter", load_ref(root / "base"), record)
    write_export(merged, tokenizer, record, root / "export", None, root / "adapter")
    return SimpleNamespace(root=root, params=params, records=records, record=record)


@pytest.fixture(scope="session")
def server(trained):
    with serving("--model", str(trained / "adapter"), "--base", str(trained / "base"), "--threads", "1",
                 "--max-items", "8", "--max-chars", "200", "--max-wait-ms", "20", "--metrics",
                 str(trained / "export" / "metrics.json")) as url:
        yield url
