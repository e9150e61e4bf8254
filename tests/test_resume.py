"""Reproducibility is the product: a second clean checkout with the same params gives byte-identical weights, metrics
and dvc.lock, even when its `dvc repro` is killed with SIGKILL in the middle of training and run again: it resumes
from the last complete checkpoint and ends bit-identical to the uninterrupted run (the session's shared one,
conftest.reproduced, made in another folder, maybe by another worker)."""

import json
import os
import signal
import subprocess
import time

import pytest

from helpers import RESUMABLE, make_project, run

SAVE_EVERY, STEPS = RESUMABLE["train.save_steps"], RESUMABLE["train.max_steps"]
SAME_BYTES = ["models/adapter/adapter_model.safetensors", "models/adapter/tokenizer_config.json",
              "models/adapter/qlora_sentiment.json", "metrics/metrics.json", "metrics/predictions.jsonl",
              "metrics/baseline.json", "metrics/train/metrics.json", "metrics/train/plots/metrics/train/loss.tsv",
              "data/prepared/train.jsonl", "data/prepared/report.json", "plots/data/train.png",
              "models/export/model.safetensors", "models/export/onnx/model.onnx", "plots/confusion_matrix.png"]


def losses(repo):
    lines = (repo / "metrics/train/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    return [(int(step), float(value)) for step, value in (line.split("\t") for line in lines)]


@pytest.mark.slow
def test_a_second_fresh_run_killed_in_training_resumes_to_the_same_bytes(reproduced, tmp_path, tiny_llama,
                                                                        python_bin_env):
    # Without HF_HUB_OFFLINE: outputs must not depend on how the hub client was set up.
    env = {k: v for k, v in python_bin_env.items() if k != "HF_HUB_OFFLINE"}
    repo = make_project(tmp_path / "second", tiny_llama, env, **RESUMABLE)
    process = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    marker = repo / "models/checkpoints" / f"checkpoint-{2 * SAVE_EVERY}" / "trainer_state.json"
    deadline = time.time() + 300
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the training process it started, no clean-up
    process.wait()
    assert not (repo / "models/adapter").exists(), "a killed run left an adapter behind"
    # Inspected before any rerun: no half-written curves or summary (DVC removed the old ones before the run;
    # the new ones are written whole, only after training).
    live = repo / "metrics/train"
    assert not (live / "metrics.json").exists() and not (live / "plots").exists(), sorted(live.rglob("*"))
    assert not (live / "environment.json").exists()
    # A checkpoint cut short while saving must be ignored: fake one past the last complete checkpoint.
    partial = repo / "models/checkpoints" / f"checkpoint-{STEPS - 1}"
    partial.mkdir(exist_ok=True)
    (partial / "optimizer.pt").write_bytes(b"truncated")

    resumed = run(["dvc", "repro"], repo, env)
    assert "resuming training from" in resumed.stderr, resumed.stderr[-2000:]
    assert "ignoring incomplete checkpoint" in resumed.stderr
    # Bit-identical: same weights, RNG, optimizer and scheduler state, and data order (seeded per epoch); then the
    # same evaluation, export and lock.
    assert (reproduced / "dvc.lock").read_text() == (repo / "dvc.lock").read_text()
    for path in SAME_BYTES:
        assert (reproduced / path).read_bytes() == (repo / path).read_bytes(), f"{path} differs between runs"
    # The training curve is whole: steps before the crash come from the checkpoint's log history.
    assert [s for s, _ in losses(repo)] == list(range(1, STEPS + 1))
    assert json.loads((repo / "models/adapter/qlora_sentiment.json").read_text())["global_step"] == STEPS
    assert not (repo / "models/checkpoints").exists(), "checkpoints are scratch: removed after success"
    assert "up to date" in run(["dvc", "status"], repo, env).stdout
    # The environment that produced them is recorded with the adapter.
    environment = json.loads((repo / "metrics/train/environment.json").read_text())
    assert {"python", "packages", "device"} <= set(environment) and environment["packages"]["torch"], environment


def test_checkpoints_of_another_run_are_not_resumed(tmp_path):
    from qlora_sentiment.training.checkpoints import resume_point

    folder = tmp_path / "ckpt"
    assert resume_point(folder, "run-a") is None
    done = folder / "checkpoint-5"
    done.mkdir()
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors"):
        (done / name).write_text("{}")
    assert resume_point(folder, "run-a") == done
    assert resume_point(folder, "run-b") is None  # other params or data: start clean
    assert not done.exists()
