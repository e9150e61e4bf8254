"""bench/bench.py runs end to end (not a timed test: figures live in BENCHMARKS.md) on Mistral's real architecture
with random weights, as a GPU run would, scaled down to a CPU-sized config."""

import json
import subprocess
import sys

import pytest
import yaml

from helpers import ROOT
from qlora_sentiment.config import params_from_dict
from qlora_sentiment.data.prepare import SPLITS, prepare
from qlora_sentiment.core.io import write_jsonl

sys.path.insert(0, str(ROOT / "tools"))
from compose_params import compose  # noqa: E402
from random_model import build  # noqa: E402


@pytest.mark.slow
def test_bench_on_a_random_mistral(tmp_path):
    model = build("mistral-tiny", tmp_path / "mistral-tiny")
    config = json.loads((model / "config.json").read_text())
    assert config["model_type"] == "mistral" and config["vocab_size"] == 32000 and config["num_key_value_heads"] == 2
    # the GPU recipe's params, made CPU-sized
    params = yaml.safe_load(compose(["experiment=mistral_7b", "runtime.device=cpu", "quantization.compute_dtype=float32",
                                     "train.optimizer=adamw_torch", "runtime.torch_threads=1", "train.batch_size=4",
                                     "train.max_length=160", "eval.batch_size=8"]))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    typed = params_from_dict(params)
    records, _ = prepare(params_from_dict(yaml.safe_load(compose([]))).data, typed.seed)  # offline reviews
    for name in SPLITS:
        write_jsonl(tmp_path / "data" / f"{name}.jsonl", records[name])
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench/bench.py"), "--model", str(model), "--params",
                           str(tmp_path / "params.yaml"), "--data", str(tmp_path / "data"), "--train-examples", "8",
                           "--eval-examples", "8", "--text-repeat", "3", "--reference-max-length", "192",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"train-project", "train-reference", "eval-project", "eval-reference"}
    for case, result in report["results"].items():
        assert result["examples"] == 8 and result["tokens"] > 0 and result["peak_memory_mb"] > 0, case
    assert set(report["ratios"]) == {"train_examples_per_s", "eval_examples_per_s", "train_peak_memory",
                                     "eval_peak_memory"}
    assert "project / reference" in done.stdout


def test_speed_variant_items_in_upper_case_are_environment():
    """--speed "name:QLORA_FILL_UNINITIALIZED=1,lora.r=8": the first item goes to the variant's environment (the
    code's previous behaviour, measured side by side), the rest to Hydra."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench import variant_env

    assert variant_env("QLORA_FILL_UNINITIALIZED=1,lora.r=8,train.batch_size=16") == (
        {"QLORA_FILL_UNINITIALIZED": "1"}, "lora.r=8,train.batch_size=16")
    assert variant_env("") == ({}, "")
