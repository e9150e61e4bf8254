"""runtime.device and the GPU checks, on this CPU-only machine: the reasons CUDA cannot be used are told apart
(torch's own answers mocked where they need a GPU), and nothing falls back to the CPU unasked."""

import pytest

from qlora_sentiment.core import device
from qlora_sentiment.core.errors import ConfigError


def test_cpu_only_torch_is_named_and_auto_falls_back_only_when_asked():
    import torch

    assert torch.version.cuda is None  # the CPU wheel this project pins
    assert "CPU-only build" in device.cuda_problem()
    assert device.resolve_device("auto") == "cpu" and device.resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="runtime.device: cuda, but this torch .* is a CPU-only build"):
        device.resolve_device("cuda")


def test_old_driver_and_no_visible_device(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", "12.8")

    def too_old():
        raise RuntimeError("The NVIDIA driver on your system is too old (found version 11040).")

    monkeypatch.setattr(torch.cuda, "init", too_old)
    with pytest.raises(ConfigError, match=r"CUDA cannot start \(The NVIDIA driver on your system is too old"):
        device.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "init", lambda: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.cuda_problem() == "no CUDA device is visible (CUDA_VISIBLE_DEVICES='')"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: CUDA13_ARCHES)
    assert device.resolve_device("auto") == "cuda"


# torch 2.13's CUDA 13 wheel: kernels for Turing and newer, PTX of the newest
CUDA13_ARCHES = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.mark.parametrize("capability, arches, runs", [
    ((7, 0), CUDA13_ARCHES, False),   # V100: no sm_7x <= 7.0, and PTX only for 12.0
    ((6, 0), CUDA13_ARCHES, False),   # P100
    ((7, 5), CUDA13_ARCHES, True),    # T4: its own cubin
    ((8, 9), CUDA13_ARCHES, True),    # L4 / L40S: sm_86 runs on 8.9 (same major, lower minor)
    ((9, 0), CUDA13_ARCHES, True),    # H100
    ((12, 1), CUDA13_ARCHES, True),   # a newer Blackwell: sm_120, and the PTX
    ((13, 0), CUDA13_ARCHES, True),   # a future major: only the PTX (JIT-compiled) runs
    ((13, 0), CUDA13_ARCHES[:-1], False),  # ... and without PTX nothing does
])
def test_a_gpu_the_build_cannot_run_is_named(monkeypatch, capability, arches, runs):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: arches)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "the GPU")
    problem = device.unsupported_gpu()
    assert (problem is None) == runs, problem
    if not runs and capability < (7, 5):
        assert f"the GPU (compute capability {capability[0]}.{capability[1]}) is too old" in problem
        assert "kernels for 7.5 and newer); rent a GPU of compute capability 7.5 or newer" in problem
    elif not runs:
        assert "the GPU (compute capability 13.0) has no kernels in this torch" in problem and "make lock" in problem


def test_bf16_on_a_pre_ampere_gpu_suggests_float16(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(ConfigError, match=r"Tesla T4 \(compute capability 7.5\) has no bf16 support; set "
                                          "quantization.compute_dtype: float16"):
        device.check_compute_dtype("cuda", "bfloat16")
    device.check_compute_dtype("cpu", "bfloat16")  # the CPU's bf16 is another matter: no GPU check there
    device.check_compute_dtype("cuda", "float16")


CPUINFO = ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\n"
           "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n")


@pytest.mark.parametrize("extra, expected", [("avx512_bf16", "bfloat16"), ("amx_bf16 amx_tile", "bfloat16"),
                                             ("", "float32")])
def test_auto_compute_dtype_follows_the_cpu_flags(monkeypatch, tmp_path, extra, expected):
    """auto: bf16 only where the CPU computes it natively (several times slower where it is emulated)."""
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(extra=extra))
    monkeypatch.setattr(device, "CPUINFO", str(info))
    assert device.resolve_compute_dtype("auto", "cpu") == expected
    assert device.cpu_bf16_flags() == [f for f in device.BF16_CPU_FLAGS if f in extra.split()]
    for pinned in ("float32", "bfloat16", "float16"):
        assert device.resolve_compute_dtype(pinned, "cpu") == pinned  # a pinned dtype is never changed


def test_auto_compute_dtype_on_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert device.resolve_compute_dtype("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert device.resolve_compute_dtype("auto", "cuda") == "float16"  # pre-Ampere: fp16 mixed precision


def test_setup_stage_resolves_auto_for_everything_downstream(monkeypatch):
    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.core import runtime

    from helpers import ROOT

    params = params_from_dict(compose(ROOT / "conf", ["runtime.torch_threads=1", "quantization.compute_dtype=auto"]))
    for flags, expected in ((["avx512_bf16"], "bfloat16"), ([], "float32")):
        monkeypatch.setattr(device, "cpu_bf16_flags", lambda flags=flags: flags)
        dev, resolved = runtime.setup_stage(params)
        assert (dev, resolved.quantization.compute_dtype) == ("cpu", expected)
        assert resolved.lora == params.lora and params.quantization.compute_dtype == "auto"


@pytest.mark.parametrize("cpu", ["avx2 only", "avx512", "avx512 + bf16"])
def test_the_default_resolves_the_same_on_every_cpu_of_our_kind(monkeypatch, tmp_path, cpu):
    """The committed params must not depend on which machine of the kind runs them (dvc.lock would differ)."""
    from qlora_sentiment.config import load_params
    from qlora_sentiment.core import runtime

    from helpers import ROOT

    flags = {"avx2 only": "avx avx2 fma", "avx512": "avx avx2 fma avx512f avx512bw",
             "avx512 + bf16": "avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16"}[cpu]
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
    monkeypatch.setattr(device, "CPUINFO", str(info))
    params = load_params(ROOT / "params.yaml")
    _, resolved = runtime.setup_stage(params, threads=1)
    assert resolved == params  # nothing resolved differently here: float32 and AVX2 are pinned in params.yaml
    assert (resolved.quantization.compute_dtype, resolved.runtime.cpu_isa) == ("float32", "avx2")


def test_missing_c_compiler_is_said_before_training(monkeypatch):
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_triton_available", lambda: True)
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs a C compiler, none found"):
        device.check_c_compiler("cuda")
    device.check_c_compiler("cpu")  # no Triton kernels on the CPU
    monkeypatch.setattr(device.shutil, "which", lambda name: "/usr/bin/gcc" if name == "gcc" else None)
    device.check_c_compiler("cuda")


def test_cublas_workspace_is_set_for_deterministic_kernels(monkeypatch):
    import os

    from qlora_sentiment.core.runtime import configure_environment

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    configure_environment()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_export_writes_shards_of_at_most_5_gb(monkeypatch, tmp_path):
    """A merged 7B is 14.5 GB in bf16: the export asks save_pretrained for 5 GB shards."""
    from qlora_sentiment.model import export

    seen = {}

    class Merged:
        config = type("C", (), {})()

        def save_pretrained(self, out, **kwargs):
            seen.update(kwargs)
            raise StopIteration  # the rest of the export is not this test's business

    record = type("R", (), {"head": "classifier", "clean": None})()
    with pytest.raises(StopIteration):
        export.write_export(Merged(), None, record, tmp_path, None, tmp_path)
    assert seen["max_shard_size"] == "5GB"


def test_auto_says_when_it_runs_on_the_cpu(monkeypatch, caplog):
    """A CPU-only torch beside an NVIDIA device (a `make run` without the CUDA lock on a GPU box): a warning; on a
    machine without one, a note. Either way one line with the reason."""
    import logging

    caplog.set_level(logging.INFO, logger="qlora_sentiment.core.device")
    monkeypatch.setattr(device.os.path, "exists", lambda path: path == "/dev/nvidia0")
    assert device.resolve_device("auto") == "cpu"
    [record] = caplog.records
    assert record.levelname == "WARNING" and "auto runs on the CPU: this torch" in record.getMessage()
    caplog.clear()
    monkeypatch.setattr(device.os.path, "exists", lambda path: False)
    assert device.resolve_device("auto") == "cpu"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "runtime.device: auto runs on the CPU (no NVIDIA GPU on this machine)")]


@pytest.mark.parametrize("visible, launched, expected", [
    (None, False, "0"), ("2,3", False, "2"), (" 1, 0", False, "1"), ("3", False, "3"), ("", False, ""),
    ("0,1", True, "0,1"), (None, True, None)])
def test_one_process_uses_one_gpu(monkeypatch, caplog, visible, launched, expected):
    """Outside a distributed launch a stage sees one GPU (the Trainer would wrap a model in nn.DataParallel with
    two or more, which TRL refuses); accelerate's workers (LOCAL_RANK) keep what the launcher gave them."""
    import logging

    from qlora_sentiment.core.runtime import one_gpu_per_process

    caplog.set_level(logging.INFO, logger="qlora_sentiment")
    for name, value in (("CUDA_VISIBLE_DEVICES", visible), ("LOCAL_RANK", "0" if launched else None)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    one_gpu_per_process()
    assert device.os.environ.get("CUDA_VISIBLE_DEVICES") == expected
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == (1 if expected is not None and expected != visible else 0), said
