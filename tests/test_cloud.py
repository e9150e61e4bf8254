"""The rented-GPU recipe, cloud/sky-train.yaml, checked as far as a machine without a cloud account can: SkyPilot's
own parser and schema accept it (in the launcher's venv, `make sky`), every accelerator it asks for has room for
every preset, and its `run:` commands, executed here in a clone of a local "origin" with a local DVC remote and the
tiny model, train an experiment and push it back so a fresh clone can pull it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from helpers import ROOT, make_project, run

TASK = ROOT / "cloud/sky-train.yaml"
GPU_GB = {"L4": 24, "A10G": 24, "L40S": 48, "A100": 40, "A100-80GB": 80, "H100": 80}  # memory per accelerator

PARSE = """
import json, sys
import sky
task = sky.Task.from_yaml(sys.argv[1])
print(json.dumps({"workdir": task.workdir, "spot": sorted({r.use_spot for r in task.resources}),
                  "accelerators": sorted(a for r in task.resources for a in r.accelerators),
                  "mounts": {k: v.name for k, v in task.storage_mounts.items()}, "envs": task.envs,
                  "setup": task.setup, "run": task.run}))
"""


@pytest.fixture(scope="module")
def sky_python():
    result = subprocess.run(["make", "-s", "sky"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return str(ROOT / ".venv-sky/bin/python")


def test_skypilot_accepts_the_task_and_every_gpu_fits_every_preset(sky_python, tmp_path):
    result = subprocess.run([sky_python, "-c", PARSE, str(TASK)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    task = json.loads(result.stdout.strip().splitlines()[-1])
    assert task["workdir"]["url"].startswith("https://") and task["spot"] == [True]
    assert task["mounts"] == {"/checkpoints": task["envs"]["CHECKPOINT_BUCKET"]}  # ${...} resolved from envs
    assert "LOCK=requirements/cuda.lock" in task["setup"] and "dvc exp push" in task["run"]
    raw = yaml.safe_load(TASK.read_text())
    assert sorted(raw["secrets"]) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GIT_TOKEN", "HF_TOKEN"]
    assert not any(value for value in raw["secrets"].values())  # given at launch (--secret), never in the file
    sys.path.insert(0, str(ROOT / "tools"))
    from gpu_memory import MODELS, estimate

    need = max(estimate(shape, 4, 512, True) for shape in MODELS.values())  # the presets as committed
    assert task["accelerators"] and all(GPU_GB[a] >= need for a in task["accelerators"]), need
    # the schema is SkyPilot's, and strict: a misspelt key is refused (so the check above can fail)
    broken = tmp_path / "broken.yaml"
    broken.write_text(TASK.read_text().replace("use_spot:", "use_spots:"))
    refused = subprocess.run([sky_python, "-c", PARSE, str(broken)], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "use_spots" in refused.stderr


def test_the_run_commands_train_and_push_an_experiment(tmp_path, tiny_llama, python_bin_env):
    env = python_bin_env
    origin, storage = tmp_path / "origin.git", tmp_path / "dvc-remote"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    project = make_project(tmp_path / "project", tiny_llama, env, **{"train.max_steps": 2})
    (project / "conf/experiment").mkdir()
    (project / "conf/experiment/tiny.yaml").write_text("# @package _global_\ntrain:\n  learning_rate: 1.0e-3\n")
    config = project / "conf/config.yaml"  # the experiment group, as conf/config.yaml declares it
    config.write_text("defaults:\n  - _self_\n  - experiment: null\n" + config.read_text())
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "an experiment preset and a DVC remote"], project, env)
    run(["git", "push", "-q", str(origin), "HEAD:main"], project, env)

    # the cloud machine: SkyPilot's git workdir is a clone of origin; `setup` made .venv (here: this test's Python)
    vm = tmp_path / "vm"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(vm)], tmp_path, env)
    (vm / ".venv/bin").mkdir(parents=True)
    (vm / ".venv/bin/activate").write_text(f"export PATH={sys.executable.rsplit('/', 1)[0]}:$PATH\n")
    task = yaml.safe_load(TASK.read_text())
    job = {**env, **{k: str(v) for k, v in task["envs"].items()}, "EXPERIMENT": "tiny",
           "CHECKPOINTS": str(tmp_path / "bucket"), "SKYPILOT_TASK_ID": "sky-test-1"}
    first = run(["bash", "-c", task["run"]], vm, job)
    assert "pushed experiment tiny-sky-test-1" in first.stdout, first.stdout[-2000:]
    assert (tmp_path / "bucket/tiny-sky-test-1").is_dir()  # the train stage's checkpoints went to the bucket
    assert run(["git", "ls-remote", str(origin), "refs/exps/*"], tmp_path, env).stdout.strip()
    assert any(storage.rglob("*"))
    # a relaunch after the run (spot recovery) trains nothing again and pushes the same experiment
    again = run(["bash", "-c", task["run"]], vm, job)
    assert "Running stage" not in again.stdout + again.stderr and "pushed experiment" in again.stdout

    # anyone: a fresh clone pulls the experiment, then its trained outputs from the DVC remote
    laptop = tmp_path / "laptop"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(laptop)], tmp_path, env)
    run(["dvc", "exp", "pull", "origin", "tiny-sky-test-1"], laptop, env)
    run(["dvc", "exp", "apply", "tiny-sky-test-1"], laptop, env)
    run(["dvc", "pull", "-q", "models/adapter"], laptop, env)
    assert (laptop / "models/adapter/adapter_model.safetensors").is_file()
    metrics = json.loads((laptop / "metrics/metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1
