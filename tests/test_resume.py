"""`dvc repro` killed with SIGKILL in the middle of training resumes from the last complete checkpoint on the
next `dvc repro`, and ends bit-identical to an uninterrupted run."""

import json
import os
import signal
import subprocess
import time

import pytest

from helpers import make_project, run

STEPS, SAVE_EVERY = 30, 5
LONGER = {"train.max_steps": STEPS, "train.save_steps": SAVE_EVERY, "train.logging_steps": 1,
          "train.learning_rate": 2e-3}


def losses(repo):
    lines = (repo / "metrics/train/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    return [(int(step), float(value)) for step, value in (line.split("\t") for line in lines)]


def meta(repo):
    return json.loads((repo / "models/adapter/qlora_sentiment.json").read_text())


@pytest.mark.slow
def test_killed_dvc_repro_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_llama, python_bin_env):
    env = python_bin_env
    straight = make_project(tmp_path / "straight", tiny_llama, env, **LONGER)
    run(["dvc", "repro", "train"], straight, env)

    killed = make_project(tmp_path / "killed", tiny_llama, env, **LONGER)
    process = subprocess.Popen(["dvc", "repro", "train"], cwd=killed, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    marker = killed / "models/checkpoints" / f"checkpoint-{2 * SAVE_EVERY}" / "trainer_state.json"
    deadline = time.time() + 300
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the training process it started, no clean-up
    process.wait()
    assert not (killed / "models/adapter").exists(), "a killed run left an adapter behind"
    # Inspected before any rerun: no half-written curves or summary (DVC removed the old ones before the run;
    # the new ones are written whole, only after training).
    live = killed / "metrics/train"
    assert not (live / "metrics.json").exists() and not (live / "plots").exists(), sorted(live.rglob("*"))
    assert not (live / "environment.json").exists()
    # A checkpoint cut short while saving must be ignored: fake one past the last complete checkpoint.
    partial = killed / "models/checkpoints" / f"checkpoint-{STEPS - 1}"
    partial.mkdir(exist_ok=True)
    (partial / "optimizer.pt").write_bytes(b"truncated")

    resumed = run(["dvc", "repro", "train"], killed, env)
    assert "resuming training from" in resumed.stderr, resumed.stderr[-2000:]
    assert "ignoring incomplete checkpoint" in resumed.stderr
    # Bit-identical: same weights, RNG, optimizer and scheduler state, and data order (seeded per epoch).
    assert (killed / "models/adapter/adapter_model.safetensors").read_bytes() == \
        (straight / "models/adapter/adapter_model.safetensors").read_bytes()
    # The training curve is whole: steps before the crash come from the checkpoint's log history.
    assert [s for s, _ in losses(killed)] == list(range(1, STEPS + 1))
    assert losses(killed) == losses(straight)
    assert meta(killed) == meta(straight) and meta(killed)["global_step"] == STEPS
    summary = lambda repo: json.loads((repo / "metrics/train/metrics.json").read_text())  # noqa: E731
    assert summary(killed) == summary(straight)  # same figures (the replayed keys come back sorted)
    assert not (killed / "models/checkpoints").exists(), "checkpoints are scratch: removed after success"
    assert "up to date" in run(["dvc", "status", "train"], killed, env).stdout


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
