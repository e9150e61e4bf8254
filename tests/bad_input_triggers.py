"""How tests/test_bad_inputs.py sets off each kind of catalogue trigger (qlora_sentiment/problems/: every row's
`trigger` is a kind and its arguments): TRIGGERS maps the kind to a function of the row's Case and arguments that
runs the real entry point (a CLI subprocess, a stage script, a request to a real server) and checks that nothing
was half-written. Adding a bad input of a known kind takes a catalogue row only."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

import predict_problems
from helpers import ROOT, free_port, tiny_params
from qlora_sentiment.problems import DELETE

BIN = Path(sys.executable).parent
CLI = str(BIN / "qlora-sentiment")
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# placeholder in a trigger's strings -> what stands there (a session fixture, or a function of the Case)
FIXTURES = {"<tiny_llama>": lambda case: case.fixture("tiny_llama"), "<trained>": lambda case: case.fixture("trained"),
            "<aspects>": lambda case: case.fixture("trained_aspects").root, "<tmp>": lambda case: case.tmp,
            "<free_port>": lambda case: free_port()}


@dataclass
class Case:
    """One catalogue row being triggered: its id, the test's folder and its fixtures (asked for only when used)."""
    id: str
    tmp: Path
    fixture: Callable[[str], Any]

    def expand(self, value):
        """`value` with every placeholder in its strings replaced (lists and dicts walked)."""
        if isinstance(value, str):
            for token, what in FIXTURES.items():
                if token in value:
                    value = value.replace(token, str(what(self)))
            return value
        if isinstance(value, list | tuple):
            return [self.expand(v) for v in value]
        if isinstance(value, dict):
            return {k: self.expand(v) for k, v in value.items()}
        return value


def run(cmd, cwd, env_extra=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env_extra or {})}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def patched(changes: dict) -> dict:
    """params.yaml with these dotted-key changes (DELETE removes the key)."""
    params = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        if value == DELETE:
            node.pop(key)
        else:
            node[key] = value
    return params


def write_params(tmp: Path, params: dict) -> Path:
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def lay_out(case: Case, files=None, folders=(), copies=None):
    for name, content in (files or {}).items():
        path = case.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for name in folders:
        (case.tmp / name).mkdir(parents=True)
    for name, source in case.expand(copies or {}).items():
        (case.tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, case.tmp / name)


def check(case: Case, changes):
    return run([CLI, "check", "--params", str(write_params(case.tmp, patched(case.expand(changes))))], case.tmp)


def params_file(case: Case, content):
    path = case.tmp / "params.yaml"
    if content is not None:  # None: no file there at all
        path.write_bytes(content)
    return run([CLI, "check", "--params", str(path)], case.tmp)


def prepare(case: Case, changes, files, setup):
    lay_out(case, files)
    if setup:
        SETUPS[setup](case)
    params = write_params(case.tmp, patched(case.expand(changes)))
    result = run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(params), "--out", "prepared",
                  "--report", "prepared/report.json", "--images", "images"], case.tmp)
    assert not (case.tmp / "prepared").exists() and not (case.tmp / "images").exists(), "half-written outputs"
    return result


def base_model(case: Case, changes, patch, env, copies):
    """The real base_model stage, in a process where `patch`'s Python ran first; no half-written output."""
    lay_out(case, copies=copies)
    params = write_params(case.tmp, patched(case.expand(changes)))
    argv = [str(ROOT / "stages/base_model.py"), "--params", str(params), "--out", "base"]
    if patch:
        script = case.tmp / "entry.py"
        script.write_text(PATCHES[patch](case.tmp) + f"import runpy, sys\nsys.argv = {['base_model.py', *argv[1:]]!r}\n"
                          f"runpy.run_path({argv[0]!r}, run_name='__main__')\n")
        argv = [str(script)]
    result = run([sys.executable, *argv], case.tmp, env)
    assert not (case.tmp / "base").exists(), "half-written outputs"
    return result


def stage_failure(case: Case, stage, failure):
    """A real stage entry point with the failure injected where it happens (no GPU / a broken install here); the
    advice follows the stage the script is (its name, as dvc.yaml runs stages/<name>.py)."""
    script = case.tmp / f"{stage}.py"
    script.write_text(FAILURES[failure] + "from qlora_sentiment.core.runtime import stage_entry\nstage_entry(main)()\n")
    return run([sys.executable, str(script)], case.tmp)


def cli(case: Case, argv, files=None, folders=(), copies=None, env=None, setup=None, absent=(), unchanged=()):
    lay_out(case, files, folders, copies)
    if setup:
        SETUPS[setup](case)
    result = run([CLI, *case.expand(argv)], case.tmp, case.expand(env))
    for name in absent:
        assert not (case.tmp / name).exists(), f"half-written {name}"
    for name in unchanged:
        assert (case.tmp / name).read_bytes() == files[name], f"a refused run changed {name}"
    return result


def shell(case: Case, script):
    return run(["sh", "-c", script, CLI], case.tmp)


def port_in_use(case: Case):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run([CLI, "serve", "--model", "no-model", "--port", str(busy.getsockname()[1])], case.tmp)
    assert result.returncode == 4, result.stderr
    return result


def install_other_python(case: Case):
    """`make install` with a lock resolved for another Python: stopped before a venv is made."""
    lock = case.tmp / "cpu.lock"
    other = "3.10" if sys.version_info[:2] != (3, 10) else "3.11"
    lock.write_text((ROOT / "requirements/cpu.lock").read_text().replace("for Python 3.11", f"for Python {other}"))
    result = run(["make", "-s", "-C", str(ROOT), "install", f"LOCK={lock}", f"VENV={case.tmp / 'venv'}",
                  f"PYTHON={sys.executable}"], case.tmp)
    assert not (case.tmp / "venv").exists(), "half-made venv"
    return result


def preflight(case: Case, remote, overrides, env):
    """`qlora-sentiment preflight` in a clone-like repo with the project's conf/ and this default remote."""
    repo = case.tmp / "repo"
    shutil.copytree(ROOT / "conf", repo / "conf")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    if remote:
        run(["dvc", "remote", "add", "-d", "storage", remote], repo)
        if remote.startswith("s3://"):  # were a request sent, it would go nowhere but this machine
            run(["dvc", "remote", "modify", "storage", "endpointurl", f"http://127.0.0.1:{free_port()}"], repo)
    # no key anywhere (no variables, an empty HOME)
    clean = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if k in os.environ}
    args = [a for o in overrides for a in ("-S", o)]
    return run([CLI, "preflight", *args], repo, {**clean, "HOME": str(case.tmp), **env})


def export_low_memory(case: Case):
    """The real export stage on the tiny adapter (~1 MB to merge), on a machine with 64 KiB of RAM available."""
    trained, tmp = case.fixture("trained"), case.tmp
    params = write_params(tmp, tiny_params(trained / "base"))
    (tmp / "metrics.json").write_text("{}")
    script = tmp / "export.py"
    script.write_text(
        "import runpy, sys, psutil\n"
        "real = psutil.virtual_memory()\n"
        "psutil.virtual_memory = lambda: real._replace(available=2**16)\n"
        f"sys.argv = ['export.py', '--params', {str(params)!r}, '--base', {str(trained / 'base')!r},\n"
        f"            '--adapter', {str(trained / 'adapter')!r}, '--metrics', 'metrics.json',\n"
        "            '--error-analysis', 'metrics.json', '--out', 'export']\n"
        f"runpy.run_path({str(ROOT / 'stages/export.py')!r}, run_name='__main__')\n")
    result = run([sys.executable, str(script)], tmp)
    assert not (tmp / "export").exists(), "half-written outputs"
    return result


def http(case: Case, **_):
    """The answer of the session's real server (test_serving_door's door_server) to the row's request."""
    from test_serving_door import door_answer

    return door_answer(case.fixture("door_server"), case.id)


TRIGGERS = {"check": check, "params_file": params_file, "prepare": prepare, "base_model": base_model,
            "stage_failure": stage_failure, "cli": cli, "shell": shell, "port_in_use": port_in_use,
            "install_other_python": install_other_python, "preflight": preflight,
            "export_low_memory": export_low_memory, "http": http,
            "resume": lambda case, change: predict_problems.resume(case.tmp, change, run),
            "output_busy": lambda case: predict_problems.output_busy(case.tmp, run),
            "trained_output": lambda case, what: predict_problems.trained_output(what, case.tmp,
                                                                                 case.fixture("trained"), run)}


def saved_dataset(case: Case):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}, features=features),
        "unlabelled": datasets.Dataset.from_dict({"text": ["meh"], "label": [-1]}, features=features),
    }).save_to_disk(str(case.tmp / "data/raw/ds"))


def export_without_cleaning(case: Case):
    """An export's record (cleaning recorded) beside a tokenizer without the cleaning normalizer (the base's)."""
    from qlora_sentiment.config import QuantizationConfig
    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.model.record import ExportInfo, ModelRecord, OptimizerUse, write_record

    folder, tiny_llama = case.tmp / "export", case.fixture("tiny_llama")
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llama / name, folder / name)
    write_record(folder, ModelRecord(
        head="classifier", labels=["negative", "positive"], prompt_template="{text}", chat_template=False,
        max_length=96, quantization=QuantizationConfig(**PARAMS["quantization"]), base_model={},
        optimizer=OptimizerUse(requested="adamw_torch", used="adamw_torch"), device="cpu", trainable_parameters=1,
        total_parameters=1, global_step=1, processes=1, train_loss=None, eval_loss=None, validation={},
        export=ExportInfo(merged_from="adapter", dtype="float32", auto_class="AutoModelForSequenceClassification"),
        clean=TextCleaning(html=True, unicode="NFKC", format_chars="remove")))


def export_without_onnx(case: Case):
    """The session's export copied without its ONNX copy (as one made before it existed)."""
    shutil.copytree(case.fixture("trained") / "export", case.tmp / "export", ignore=shutil.ignore_patterns("onnx"))


SETUPS = {"saved_dataset": saved_dataset, "export_without_cleaning": export_without_cleaning,
          "export_without_onnx": export_without_onnx}

def fake_cpuinfo(tmp: Path) -> Path:
    (tmp / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx\n")
    return tmp / "cpuinfo"


# Python run before the base_model stage (in its process): what the machine or the hub answers there
PATCHES = {
    # the hub answers 403 for a gated repository
    "gated_hub": lambda tmp: (
        "import httpx, huggingface_hub\n"
        "from huggingface_hub.errors import GatedRepoError\n"
        "def refuse(repo_id, **kwargs):\n"
        "    request = httpx.Request('GET', f'https://huggingface.co/api/models/{repo_id}')\n"
        "    raise GatedRepoError(f'403 Client Error. Cannot access gated repo {repo_id}',\n"
        "                         response=httpx.Response(403, request=request))\n"
        "huggingface_hub.snapshot_download = refuse\n"),
    # a CPU without AVX2 (its /proc/cpuinfo replaced): stops before torch loads
    "cpu_without_avx2": lambda tmp: (
        f"import qlora_sentiment.core.device as device\ndevice.CPUINFO = {str(fake_cpuinfo(tmp))!r}\n"),
    # a V100 under the CUDA 13 build (torch's device queries answered as there): stops before resolving the model
    "v100_under_cuda13": lambda tmp: (
        "import torch\n"
        "torch.version.cuda = '13.0'\n"
        "torch.cuda.init = lambda: None\n"
        "torch.cuda.device_count = lambda: 1\n"
        "torch.cuda.get_device_capability = lambda device=0: (7, 0)\n"
        "torch.cuda.get_device_name = lambda device=0: 'Tesla V100-SXM2-16GB'\n"
        "torch.cuda.get_arch_list = lambda: "
        f"{['sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120', 'compute_120']!r}\n"),
    # the real packaged GGUF parts, one byte of the joined file changed on the way
    "joined_parts_damaged": lambda tmp: (
        "import shutil\n"
        "real = shutil.copyfileobj\n"
        "def damaged(src, dst, length=0):\n"
        "    real(src, dst, length)\n"
        "    dst.write(b'x')\n"
        "shutil.copyfileobj = damaged\n"),
}
# `main` of a stage script that fails as a real stage would there
FAILURES = {
    "bitsandbytes_missing": "import sys; sys.modules['bitsandbytes'] = None\n"
                            "from qlora_sentiment.model.loading import bnb_config\n"
                            "from qlora_sentiment.config import QuantizationConfig\n"
                            "main = lambda argv: bnb_config(QuantizationConfig(load_in_4bit=True, quant_type='nf4', "
                            "double_quant=True, compute_dtype='float32'))\n",
    "cuda_out_of_memory": "import torch\n"
                          "def main(argv):\n"
                          "    raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2 GiB')\n",
}
