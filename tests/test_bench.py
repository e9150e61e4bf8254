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
from compose_params import compose
from random_model import build


@pytest.mark.slow
def test_bench_on_a_random_mistral(tmp_path):
    model = build("mistral-tiny", tmp_path / "mistral-tiny")
    config = json.loads((model / "config.json").read_text())
    assert config["model_type"] == "mistral" and config["vocab_size"] == 32000 and config["num_key_value_heads"] == 2
    # the GPU recipe's params, made CPU-sized
    params = yaml.safe_load(compose(["experiment=mistral_7b", "runtime.device=cpu",
                                     "quantization.compute_dtype=float32", "train.optimizer=adamw_torch",
                                     "runtime.torch_threads=1", "train.batch_size=4", "train.max_length=160",
                                     "eval.batch_size=8"]))
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


def test_per_token_int8_fused_computes_what_unfused_does(tmp_path):
    """bench/pertoken_int8.py's fusion (one quantization and one wider int8 product for the MatMuls that read one
    input, then a Split) is a rearrangement, not another approximation: same outputs as one block per MatMul."""
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    sys.path.insert(0, str(ROOT / "bench"))
    from pertoken_int8 import per_token_int8

    rng = np.random.default_rng(0)
    shapes = {"q": (8, 6), "k": (8, 4), "v": (8, 4), "o": (6, 8), "head": (16, 2)}  # q/k/v read x; the head is last
    weights = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), f"w_{n}") for n, s in shapes.items()]
    nodes = [helper.make_node("MatMul", ["x", f"w_{n}"], [n], name=f"mm_{n}") for n in "qkv"]
    nodes += [helper.make_node("MatMul", ["q", "w_o"], ["o"], name="mm_o"),
              helper.make_node("Concat", ["o", "k", "v"], ["h"], axis=-1),
              helper.make_node("MatMul", ["h", "w_head"], ["y"], name="mm_head")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 2])], weights)
    source = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), source)
    x = rng.normal(size=(2, 3, 8)).astype(np.float32)
    x[0, 1, 3] = 40.0  # an outlier token: per-token scales keep it from flattening the others
    bits = 7  # 8-bit weights overflow AVX2's 16-bit uint8*int8 pairs where there is no VNNI (measured on a Zen 3)

    def run(fuse: bool):
        target = tmp_path / f"fused-{fuse}.onnx"
        # q, k, v, o; the score head stays float32
        assert per_token_int8(source, target, weight_bits=bits, fuse=fuse) == 4
        kinds = [n.op_type for n in onnx.load(target, load_external_data=False).graph.node]
        assert kinds.count("MatMulInteger") == (2 if fuse else 4) and kinds.count("Split") == int(fuse)
        return onnxruntime.InferenceSession(target).run(None, {"x": x})[0]

    exact = onnxruntime.InferenceSession(source).run(None, {"x": x})[0]
    fused, unfused = run(True), run(False)
    np.testing.assert_allclose(fused, unfused, rtol=1e-6, atol=1e-6)
    assert 0 < np.abs(fused - exact).max() < 0.1 * np.abs(exact).max()  # int8: close to float32, not equal

    # act_blocks: q/k/v's 8 inputs in two blocks of 4, each with its own per-token scale and int8 product
    target = tmp_path / "blocks.onnx"
    per_token_int8(source, target, weight_bits=bits, fuse=True, act_blocks={8: 4})
    kinds = [n.op_type for n in onnx.load(target, load_external_data=False).graph.node]
    assert kinds.count("MatMulInteger") == 3 and kinds.count("Slice") == 2
    blocked = onnxruntime.InferenceSession(target).run(None, {"x": x})[0]
    assert 0 < np.abs(blocked - exact).max() < 0.1 * np.abs(exact).max()
