"""Same bytes whatever the CPU's instruction set: runtime.cpu_isa (core/cpu_isa.py) against an AVX2-only machine
simulated on this one (tools/as_avx2: ATen, oneDNN, MKL, NumPy capped, bitsandbytes told there is no avx512_bf16)."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT

# Trains the tiny model through the library (train_tiny: prepare, train, validation scoring) and scores texts with
# the saved adapter as predict/evaluate do; prints what must not depend on the CPU.
PROBE = """
import hashlib, json, sys
from pathlib import Path
from qlora_sentiment.core.runtime import program_gc
program_gc()  # a process of its own, as a stage's
sys.path.insert(0, {tests!r})
from helpers import train_tiny
out = Path(sys.argv[1])
out.mkdir()
params, records, result = train_tiny(out, Path({model!r}), **{{"runtime.cpu_isa": sys.argv[2], "train.max_steps": 8}})
from qlora_sentiment.model.adapter import load_scorer
probs = load_scorer(out / "adapter", out / "base").predict_proba([r["text"] for r in records["test"]])
import torch
print(json.dumps({{
    "capability": torch.backends.cpu.get_cpu_capability(),
    "adapter": hashlib.sha256((out / "adapter/adapter_model.safetensors").read_bytes()).hexdigest(),
    "validation": result.record.validation,
    "probs": [float(p).hex() for p in probs.ravel()],
}}))
"""


def probe(tmp_path, tiny_llama, isa: str, as_avx2: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "PYTHONPATH")}
    if as_avx2:
        env["PYTHONPATH"] = str(ROOT / "tools/as_avx2")
    code = PROBE.format(tests=str(ROOT / "tests"), model=str(tiny_llama))
    out = tmp_path / f"{isa}-{'avx2' if as_avx2 else 'here'}"
    result = subprocess.run([sys.executable, "-c", code, str(out), isa], env=env, capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def native_capability() -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    return subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
def test_pinned_runs_equal_an_avx2_machine_byte_for_byte(tmp_path, tiny_llama):
    here = probe(tmp_path, tiny_llama, "avx2", as_avx2=False)
    avx2 = probe(tmp_path, tiny_llama, "avx2", as_avx2=True)
    assert here["capability"] == avx2["capability"] == "AVX2"
    assert here["adapter"] == avx2["adapter"]
    assert here["validation"] == avx2["validation"]
    assert here["probs"] == avx2["probs"]
    if native_capability() != "AVX512":
        pytest.skip("this CPU has no AVX-512: the unpinned control would run AVX2 kernels too")
    # The control: unpinned on this AVX-512 machine, the same training writes other weights.
    native = probe(tmp_path, tiny_llama, "native", as_avx2=False)
    assert native["capability"] == "AVX512"
    assert native["adapter"] != avx2["adapter"]


def test_pin_sets_the_libraries_caps_and_refuses_a_cpu_without_avx2(monkeypatch):
    import qlora_sentiment.core.cpu_isa as cpu_isa
    from qlora_sentiment.core.errors import ConfigError

    for name in cpu_isa.PINS["avx2"]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="runtime.cpu_isa: avx2, but this CPU has no AVX2"):
        cpu_isa.pin_cpu_isa("avx2", flags={"sse4_2", "avx"})
    assert "ATEN_CPU_CAPABILITY" not in os.environ  # nothing half-set
    cpu_isa.pin_cpu_isa("native", flags=set())
    assert "ATEN_CPU_CAPABILITY" not in os.environ
    monkeypatch.setattr(cpu_isa, "_pinned", None)
    cpu_isa.pin_cpu_isa("avx2", flags={"avx2"})  # torch is loaded in this process, already at AVX2 (conftest)
    assert {k: os.environ[k] for k in cpu_isa.PINS["avx2"]} == cpu_isa.PINS["avx2"]
    assert cpu_isa.pinned_isa() == "avx2"


def test_bitsandbytes_bf16_kernel_is_off_unless_bf16_runs_natively(monkeypatch, tiny_llama):
    """bitsandbytes computes eval-mode 4-bit matmuls in bf16 on avx512_bf16 CPUs even when float32 is asked."""
    import bitsandbytes as bnb

    import qlora_sentiment.core.cpu_isa as cpu_isa
    from qlora_sentiment.model.loading import keep_cpu_bf16_kernel

    def layers():
        model = bnb.nn.Linear4bit(64, 64, compute_dtype=None)
        model.support_avx512bf16_for_cpu = True  # as on an avx512_bf16 CPU
        return model

    monkeypatch.setattr(cpu_isa, "_pinned", "avx2")
    for dtype in ("float32", "bfloat16"):
        layer = layers()
        keep_cpu_bf16_kernel(layer, dtype)
        assert layer.support_avx512bf16_for_cpu is False
    monkeypatch.setattr(cpu_isa, "_pinned", None)
    layer = layers()
    keep_cpu_bf16_kernel(layer, "float32")
    assert layer.support_avx512bf16_for_cpu is False
    layer = layers()
    keep_cpu_bf16_kernel(layer, "bfloat16")
    assert layer.support_avx512bf16_for_cpu is True


def test_environment_record_holds_only_what_machines_of_one_kind_share(monkeypatch):
    """metrics/train/environment.json is git-tracked: CPU flags that changed nothing must not be in it."""
    import qlora_sentiment.core.cpu_isa as cpu_isa
    from qlora_sentiment.core.environment import describe_environment

    monkeypatch.setattr(cpu_isa, "_pinned", "avx2")
    pinned = describe_environment("float32")
    assert pinned["cpu_isa"] == "avx2" and pinned["cpu_capability"] == "AVX2" and pinned["compute_dtype"] == "float32"
    assert "cpu_bf16_flags" not in pinned and pinned["python"] == "%d.%d" % sys.version_info[:2]
    assert "cpu_bf16_flags" in describe_environment("bfloat16", auto_dtype=True)  # what decided `auto`
    assert describe_environment("float32", cpu_matmul="onednn")["cpu_matmul"] == "onednn"  # runtime.cpu_matmul
    assert "cpu_matmul" not in pinned
