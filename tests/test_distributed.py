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
    assert "ddp training on 2 processes" in result.stderr + result.stdout
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


@pytest.mark.slow  # a real `accelerate launch` configuration check with the model's FSDP wrapping
def test_fsdp_launch_and_quantization_storage():
    """FSDP + QLoRA cannot run here (FSDP with bitsandbytes layers needs CUDA GPUs): what the train stage would
    launch, and how it would quantize, are checked instead."""
    import torch

    from helpers import section
    from qlora_sentiment.config import params_from_dict
    from qlora_sentiment.core.errors import ConfigError
    from qlora_sentiment.core.runtime import launch_command
    from qlora_sentiment.model.loading import bnb_config

    cmd = launch_command(2, "fsdp", "stages/train.py", ["--params", "params.yaml"])
    flags = dict(zip(cmd, cmd[1:]))
    assert "--use_fsdp" in cmd and "--multi_gpu" not in cmd and flags["--num_processes"] == "2"
    assert flags["--fsdp_sharding_strategy"] == "FULL_SHARD"
    assert flags["--fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert flags["--fsdp_cpu_ram_efficient_loading"] == "true" and flags["--fsdp_sync_module_states"] == "true"
    assert flags["--fsdp_use_orig_params"] == "false"
    assert cmd[-3:] == ["stages/train.py", "--params", "params.yaml"]
    # accelerate accepts every flag: its own parser reads the command
    from accelerate.commands.launch import launch_command_parser

    parsed = launch_command_parser().parse_args(cmd[3:])
    assert parsed.use_fsdp and parsed.num_processes == 2 and parsed.training_script == "stages/train.py"
    ddp = launch_command(2, "ddp", "stages/train.py", [])
    assert "--multi_gpu" in ddp and "--use_fsdp" not in ddp

    q = section("quantization", compute_dtype="bfloat16")
    assert bnb_config(q, sharded=True).bnb_4bit_quant_storage == torch.bfloat16  # FSDP shards float tensors
    assert bnb_config(q).bnb_4bit_quant_storage == torch.uint8

    from helpers import conf_defaults
    raw = {**conf_defaults(), "runtime": {**conf_defaults()["runtime"], "strategy": "fsdp", "num_processes": 1}}
    with pytest.raises(ConfigError, match="runtime.strategy: fsdp shards the model across processes"):
        params_from_dict(raw)


def test_fsdp_without_a_gpu_stops_with_one_line(tmp_path, tiny_llama, python_bin_env):
    """accelerate's FSDP needs GPUs: on this CPU machine the train stage says so before launching anything."""
    repo = make_project(tmp_path / "project", tiny_llama, python_bin_env,
                        **{"runtime.strategy": "fsdp", "runtime.num_processes": 2})
    result = run(["python", "stages/train.py", "--base", "models/base", "--data", "data/prepared", "--out",
                  "models/adapter", "--live", "metrics/train", "--checkpoints", "models/checkpoints",
                  "--environment", "metrics/train/environment.json"], repo, python_bin_env, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: runtime.strategy: fsdp shards the model across")


def test_the_process_and_its_device_are_set_before_the_model_loads(monkeypatch, tiny_llama):
    """Under a launch, accelerate's PartialState joins the process group and sets cuda:LOCAL_RANK; a model loaded
    before it was quantized onto cuda:0 in every process (FSDP then found cuda:0 vs cuda:1 on rank 1)."""
    from accelerate import PartialState

    from helpers import ROOT
    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.training import run as training

    seen = []

    def load_model(*args, **kwargs):
        seen.append(bool(PartialState._shared_state))
        raise RuntimeError("stop here")

    PartialState._reset_state()
    monkeypatch.setattr(training, "load_model", load_model)
    params = params_from_dict(compose(ROOT / "conf", ["model.source=local", f"model.name={tiny_llama}",
                                                         "lora.last_n_layers=null"]))
    with pytest.raises(RuntimeError, match="stop here"):
        training.train(params, BaseRef(str(tiny_llama), None, {}), [], [], tiny_llama / "checkpoints")
    assert seen == [True]
    PartialState._reset_state()
