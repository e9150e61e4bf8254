"""Data-parallel training through `accelerate launch`, selected in params: 2 CPU processes joined by gloo train
the same adapter as one process (the global batch is the same; each process takes half of it)."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from helpers import make_project, run


def adapter_weights(repo):
    return load_file(str(repo / "models/adapter/adapter_model.safetensors"))


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path, tiny_llama, python_bin_env):
    env = python_bin_env
    # random order and no LoRA dropout: with both, the two runs see the same batches and the same noise
    repo = make_project(tmp_path / "project", tiny_llama, env, **{"train.sampling": "random", "lora.dropout": 0.0,
                                                                  "runtime.torch_threads": 2})
    run(["dvc", "repro", "train"], repo, env)
    single = adapter_weights(repo)
    single_metrics = json.loads((repo / "metrics/train/metrics.json").read_text())
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "one process"], repo, env)

    result = run(["dvc", "exp", "run", "train", "-S", "runtime.num_processes=2"], repo, env)
    assert "data-parallel training on 2 processes" in result.stderr + result.stdout
    assert json.loads((repo / "models/adapter/qlora_sentiment.json").read_text())["processes"] == 2
    double = adapter_weights(repo)
    double_metrics = json.loads((repo / "metrics/train/metrics.json").read_text())
    assert double_metrics["step"] == single_metrics["step"]  # same number of optimizer steps: global batch kept
    assert sorted(double) == sorted(single)
    worst = max(float(np.max(np.abs(double[k] - single[k]))) for k in single)
    scale = max(float(np.max(np.abs(single[k]))) for k in single)
    assert worst <= 1e-3 * scale, (worst, scale)  # all-reduced gradients: equal up to float summation order
    assert double_metrics["train"]["train_loss"] == pytest.approx(single_metrics["train"]["train_loss"], rel=1e-3)
    assert double_metrics["validation"] == pytest.approx(single_metrics["validation"], abs=1e-9)
