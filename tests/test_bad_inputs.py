"""The bad-input catalogue, triggered for real: every entry of qlora_sentiment.troubleshooting gives one `error:`
line containing its message, a non-zero exit and no traceback; docs/troubleshooting.md's table is generated from it."""

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, free_port
from predict_problems import TRAINED_OUTPUT_PROBLEMS, trained_output_problem  # predict: a real run on the tiny model
from test_serving_door import DOOR_CASES, door_answer, door_server  # noqa: F401 (door_server: a fixture)
from qlora_sentiment.troubleshooting import CATALOGUE

BIN = Path(sys.executable).parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def patched(*changes):
    params = copy.deepcopy(PARAMS)
    for dotted, value in changes:
        *path, key = dotted.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(key)
        else:
            node[key] = value
    return params


DELETE = object()


def local_data(tmp, content: bytes, name="reviews.csv"):
    """A file in the folder prepare depends on (data/raw/ under the run's working directory)."""
    path = tmp / "data/raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return ("data.source", "local"), ("data.name", f"data/raw/{name}"), ("data.group_column", None), \
        ("data.label_column", "label")


# id -> (command: check | prepare | base_model | predict, params changes or a setup function)
PARAM_CASES = {
    "unknown-key": [("train.learnig_rate", 1e-4)],
    "unknown-section": [("trian.epochs", 1)],
    "wrong-type": [("train.batch_size", "eight")],
    "learning-rate": [("train.learning_rate", 0)],
    "lora-rank": [("lora.r", 0)],
    "lora-dropout": [("lora.dropout", 1.0)],
    "split-fractions": [("data.split", {"train": 0.8, "validation": 0.1, "test": 0.2})],
    "unknown-head": [("model.head", "regression")],
    "quant-type": [("quantization.quant_type", "nf5")],
    "label-count": [("data.labels", ["a", "b", "c", "d"])],
    "compute-dtype": [("quantization.compute_dtype", "bf16")],
    "cpu-matmul": [("runtime.cpu_matmul", "blas")],
    "prompt-placeholder": [("prompt.template", "no placeholder here")],
    "last-n-layers": [("lora.target_modules", "all-linear")],
    "params-partial": [("train.learning_rate", DELETE)],
    "non-finite": [("lora.alpha", float("nan"))],
    "seed-range": [("seed", -1)],
    "template-field": [("prompt.template", "Review: {text[0]}")],
    "empty-label": [("data.labels", [" ", "positive"])],
    "aspect-template": [("prompt.aspect_template", "Review: {text}\nSentiment:")],
    "aspect-before-text": [("prompt.aspect_template", "Aspect: {aspect}. Review: {text}")],
    "aspect-column-null": [("data.task", "aspect_term"), ("data.aspect_column", None)],
    "aspect-space": [("prompt.aspect_template", "Review: {text}\nAspect:{aspect}\nSentiment:")],
    "aspect-balance": [("data.task", "aspect_term"), ("data.balance", True)],
}
ASPECT_XML = ('<sentences><sentence><text>the service was slow</text>\n<aspectTerms><aspectTerm term="service" '
              'polarity="negative" from="{start}" to="11"/></aspectTerms></sentence></sentences>\n')


def data_case(problem_id, tmp):
    if problem_id == "data-file-missing":
        return [("data.source", "local"), ("data.name", "data/raw/missing.csv")]
    if problem_id == "local-data-untracked":
        (tmp / "reviews.csv").write_text("text,label\ngood,positive\nbad,negative\n")
        return [("data.source", "local"), ("data.name", str(tmp / "reviews.csv"))]
    if problem_id == "data-column-missing":
        return [*local_data(tmp, b"text,label\ngood,positive\nbad,negative\n"), ("data.text_column", "review")]
    if problem_id == "label-outside-map":
        return [*local_data(tmp, b"text,label\nok film,meh\nbad film,negative\n")]
    if problem_id == "not-utf8":
        return [*local_data(tmp, b"text,label\ncaf\xe9 good,positive\nbad,negative\n")]
    if problem_id == "single-class":
        return [*local_data(tmp, b"text,label\ngood,positive\ngreat,positive\nfine,positive\n")]
    if problem_id == "empty-after-cleaning":
        return [*local_data(tmp, b"text,label\n ,positive\n<br />,negative\n&nbsp;,negative\n")]
    if problem_id == "text-too-long":
        return [*local_data(tmp, b"text,label\ngood,positive\n" + b"a" * 2**20 + b",negative\n")]
    if problem_id in ("unlabelled-rows", "unknown-source-split"):
        import datasets

        features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
        datasets.DatasetDict({
            "train": datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}, features=features),
            "unlabelled": datasets.Dataset.from_dict({"text": ["meh"], "label": [-1]}, features=features),
        }).save_to_disk(str(tmp / "data/raw/ds"))
        splits = None if problem_id == "unlabelled-rows" else {"train": "train", "test": "dev"}
        return [("data.source", "hub"), ("data.name", "data/raw/ds"), ("data.group_column", None),
                ("data.label_column", "label"), ("data.splits", splits)]
    aspect_files = {"aspect-file-sentence-task": ("train.xml", ASPECT_XML.format(start=4), "sentence"),
                    "aspect-xml-broken": ("train.xml", ASPECT_XML.format(start=4).replace("</aspectTerms>", ""), None),
                    "aspect-xml-attribute": ("train.xml", ASPECT_XML.format(start=4).replace(' polarity="negative"',
                                                                                             ""), None),
                    "aspect-offsets": ("train.xml", ASPECT_XML.format(start=5), None),
                    "aspect-seg-lines": ("train.seg", "the $T$ was slow\nservice\n", None)}
    if problem_id in aspect_files:
        name, content, task = aspect_files[problem_id]
        folder = tmp / "data/raw/absa"
        folder.mkdir(parents=True)
        (folder / name).write_text(content)
        return [("data.task", task or "aspect_term"), ("data.source", "local"), ("data.name", "data/raw/absa"),
                ("data.splits", {"train": name}), ("data.group_column", None)]
    if problem_id == "aspect-column-missing":
        return [*local_data(tmp, b"text,label\ngood food,positive\nbad food,negative\n"), ("data.task", "aspect_term")]
    if problem_id == "offline-corpus":
        return [("data.name", "rotten_potatoes")]
    if problem_id == "hub-dataset-unreachable":
        return [("data.source", "hub"), ("data.name", "qlora-sentiment-tests/no-such-dataset"),
                ("data.group_column", None)]
    raise KeyError(problem_id)


def run(cmd, cwd, env_extra=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env_extra or {})}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def assert_one_error_line(result, message):
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1, result.stderr[-2000:]
    assert message in errors[0], errors[0]
    return errors[0]


def base_model_patched(tmp, params, prelude: str):
    """The real base_model stage, in a process where `prelude` (Python) ran first; no half-written output."""
    script = tmp / "entry.py"
    script.write_text(prelude + "import runpy, sys\n"
                      f"sys.argv = ['base_model.py', '--params', {str(params)!r}, '--out', 'base']\n"
                      f"runpy.run_path({str(ROOT / 'stages/base_model.py')!r}, run_name='__main__')\n")
    result = run([sys.executable, str(script)], tmp)
    assert not (tmp / "base").exists(), "half-written outputs"
    return result


def write_params(tmp, params):
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def export_without_cleaning(folder, tiny_llama):
    """An export's record (cleaning recorded) beside a tokenizer without the cleaning normalizer (the base's)."""
    import shutil

    from qlora_sentiment.config import QuantizationConfig
    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.model.record import ExportInfo, ModelRecord, OptimizerUse, write_record

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
    return folder


def trigger(problem_id, tmp, tiny_llama):
    """Run the real command for one catalogue entry; returns the CompletedProcess."""
    py = sys.executable
    if problem_id in PARAM_CASES:
        return run([str(BIN / "qlora-sentiment"), "check", "--params",
                    str(write_params(tmp, patched(*PARAM_CASES[problem_id])))], tmp)
    if problem_id == "params-missing":
        return run([str(BIN / "qlora-sentiment"), "check", "--params", str(tmp / "nope.yaml")], tmp)
    if problem_id == "params-empty":
        (tmp / "params.yaml").write_text("# nothing\n")
        return run([str(BIN / "qlora-sentiment"), "check", "--params", str(tmp / "params.yaml")], tmp)
    if problem_id == "params-not-utf8":
        (tmp / "params.yaml").write_bytes(b"seed: 42\n# caf\xe9\n")
        return run([str(BIN / "qlora-sentiment"), "check", "--params", str(tmp / "params.yaml")], tmp)
    if problem_id == "params-yaml":
        (tmp / "params.yaml").write_text("train: [1, 2\n")
        return run([str(BIN / "qlora-sentiment"), "check", "--params", str(tmp / "params.yaml")], tmp)
    if problem_id.startswith(("data-", "label-", "not-utf8", "single-", "offline-", "hub-dataset", "empty-after", "text-",
                              "unlabelled-", "unknown-source", "local-data", "aspect-file", "aspect-xml",
                              "aspect-offsets", "aspect-seg", "aspect-column-missing")):
        params = write_params(tmp, patched(*data_case(problem_id, tmp)))
        result = run([py, str(ROOT / "stages/prepare.py"), "--params", str(params), "--out", "prepared",
                      "--report", "prepared/report.json", "--images", "images"], tmp)
        assert not (tmp / "prepared").exists() and not (tmp / "images").exists(), "half-written outputs"
        return result
    if problem_id in ("hub-model-unreachable", "model-without-weights", "local-model-untracked", "no-cuda"):
        if problem_id == "no-cuda":  # a GPU preset on this CPU-only torch: stops before resolving any model
            changes = [("runtime.device", "cuda"), ("model.source", "hub"), ("model.name", "acme/some-7b")]
        elif problem_id == "hub-model-unreachable":
            changes = [("model.source", "hub"), ("model.name", "qlora-sentiment-tests/no-such-model")]
        elif problem_id == "local-model-untracked":
            changes = [("model.source", "local"), ("model.name", str(tiny_llama))]
        else:
            folder = tmp / "models/local/model"
            folder.mkdir(parents=True)
            (folder / "config.json").write_text((tiny_llama / "config.json").read_text())
            changes = [("model.source", "local"), ("model.name", "models/local/model")]
        result = run([py, str(ROOT / "stages/base_model.py"), "--params", str(write_params(tmp, patched(*changes))),
                      "--out", "base"], tmp)
        assert not (tmp / "base").exists(), "half-written outputs"
        return result
    if problem_id == "not-an-adapter":
        return run([str(BIN / "qlora-sentiment"), "predict", "--model", str(tmp), "a review"], tmp)
    if problem_id == "hub-model-gated":
        # The real base_model stage against a mocked hub answer: 403 for a gated repository.
        params = write_params(tmp, patched(("model.source", "hub"), ("model.name", "acme/gated-7b")))
        script = tmp / "entry.py"
        script.write_text(
            "import runpy, sys, httpx, huggingface_hub\n"
            "from huggingface_hub.errors import GatedRepoError\n"
            "def refuse(repo_id, **kwargs):\n"
            "    request = httpx.Request('GET', f'https://huggingface.co/api/models/{repo_id}')\n"
            "    raise GatedRepoError(f'403 Client Error. Cannot access gated repo {repo_id}',\n"
            "                         response=httpx.Response(403, request=request))\n"
            "huggingface_hub.snapshot_download = refuse\n"
            f"sys.argv = ['base_model.py', '--params', {str(params)!r}, '--out', 'base']\n"
            f"runpy.run_path({str(ROOT / 'stages/base_model.py')!r}, run_name='__main__')\n")
        result = run([py, str(script)], tmp, {"HF_HUB_OFFLINE": "0"})
        assert not (tmp / "base").exists(), "half-written outputs"
        return result
    if problem_id == "cpu-isa-missing":
        # The real base_model stage on a CPU without AVX2 (its /proc/cpuinfo replaced): stops before torch loads.
        fake = tmp / "cpuinfo"
        fake.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx\n")
        params = write_params(tmp, patched(("runtime.cpu_isa", "avx2")))
        return base_model_patched(tmp, params, "import qlora_sentiment.core.device as device\n"
                                               f"device.CPUINFO = {str(fake)!r}\n")
    if problem_id == "gpu-too-old":
        # The real base_model stage on a V100 under the CUDA 13 build (torch's device queries answered as there):
        # stops before resolving, let alone downloading, the model
        params = write_params(tmp, patched(("runtime.device", "cuda"), ("model.source", "hub"),
                                           ("model.name", "acme/some-7b")))
        arches = ['sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120', 'compute_120']
        return base_model_patched(tmp, params, (
            "import torch\n"
            "torch.version.cuda = '13.0'\n"
            "torch.cuda.init = lambda: None\n"
            "torch.cuda.device_count = lambda: 1\n"
            "torch.cuda.get_device_capability = lambda device=0: (7, 0)\n"
            "torch.cuda.get_device_name = lambda device=0: 'Tesla V100-SXM2-16GB'\n"
            f"torch.cuda.get_arch_list = lambda: {arches!r}\n"))
    if problem_id in CLOUD_CASES:
        return cloud_case(problem_id, tmp)
    if problem_id == "lock-mismatch":
        # `make install` with a lock resolved for another Python: stopped before a venv is made.
        lock = tmp / "cpu.lock"
        other = "3.10" if sys.version_info[:2] != (3, 10) else "3.11"
        text = (ROOT / "requirements/cpu.lock").read_text().replace("for Python 3.11", f"for Python {other}")
        lock.write_text(text)
        result = run(["make", "-s", "-C", str(ROOT), "install", f"LOCK={lock}", f"VENV={tmp / 'venv'}",
                      f"PYTHON={sys.executable}"], tmp)
        assert not (tmp / "venv").exists(), "half-made venv"
        return result
    if problem_id == "gguf-parts-damaged":
        # The real base_model stage on the real packaged parts, one byte of the joined file changed on the way.
        params = write_params(tmp, patched(("model.name", "gemma3-270m")))
        return base_model_patched(tmp, params, (
            "import shutil\n"
            "real = shutil.copyfileobj\n"
            "def damaged(src, dst, length=0):\n"
            "    real(src, dst, length)\n"
            "    dst.write(b'x')\n"
            "shutil.copyfileobj = damaged\n"))
    if problem_id in ("bitsandbytes-missing", "cuda-out-of-memory", "cuda-out-of-memory-scoring",
                      "cuda-out-of-memory-export"):
        # A real stage entry point with the failure injected where it happens (no GPU / a broken install here).
        code = {
            "bitsandbytes-missing": "import sys; sys.modules['bitsandbytes'] = None\n"
                                    "from qlora_sentiment.model.loading import bnb_config\n"
                                    "from qlora_sentiment.config import QuantizationConfig\n"
                                    "main = lambda argv: bnb_config(QuantizationConfig(load_in_4bit=True, quant_type='nf4', double_quant=True, compute_dtype='float32'))\n",
        }.get(problem_id, "import torch\n"
                          "def main(argv):\n    raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2 GiB')\n")
        # the advice follows the stage the script is (its name, as dvc.yaml runs stages/<name>.py)
        stage = {"cuda-out-of-memory": "train", "cuda-out-of-memory-scoring": "evaluate",
                 "cuda-out-of-memory-export": "export"}.get(problem_id, "entry")
        script = tmp / f"{stage}.py"
        script.write_text(code + "from qlora_sentiment.core.runtime import stage_entry\nstage_entry(main)()\n")
        return run([py, str(script)], tmp)
    # predict, serve and compare: each input error before any model loads (--model names no folder at all)
    cli = str(BIN / "qlora-sentiment")
    if problem_id == "export-tokenizer-not-cleaning":
        return run([cli, "predict", "--model", str(export_without_cleaning(tmp / "export", tiny_llama)), "a review"], tmp)
    if problem_id.startswith("ray-"):  # each refused before the model loads or Ray starts
        (tmp / "in.txt").write_text("good\nbad\n")
        (tmp / "shards").mkdir()
        (tmp / "shards" / "part-00000.parquet").write_text("earlier run")
        flags = {"ray-without-file": ["a review", "--output-dir", str(tmp / "out")],
                 "ray-with-resume": ["--file", str(tmp / "in.txt"), "--resume", "--output-dir", str(tmp / "out")],
                 "ray-output-dir-not-empty": ["--file", str(tmp / "in.txt"), "--output-dir", str(tmp / "shards")]}
        result = run([cli, "predict", "--model", "no-model", "--ray", *flags[problem_id]], tmp)
        assert not (tmp / "out").exists() and (tmp / "shards" / "part-00000.parquet").read_text() == "earlier run"
        return result
    if problem_id == "adapter-without-weights":
        (tmp / "adapter").mkdir()
        for name in ("qlora_sentiment.json", "adapter_config.json"):
            (tmp / "adapter" / name).write_text("{}")
        return run([cli, "predict", "--model", str(tmp / "adapter"), "a review"], tmp)
    files = {"predict-long-line": ("in.txt", "".join(f"review {i}\n" for i in range(1, 150)) + "a" * 30_000 + "\n"),
             "predict-empty-row": ("in.txt", "good\n\nbad\n"), "predict-invisible-text": ("in.txt", "\u200b\u200b\n"),
             "predict-lone-surrogate": ("in.jsonl", '{"text": "\\ud800"}\n'),
             "predict-nan-text": ("in.jsonl", '{"text": NaN}\n')}
    if problem_id in files:
        name, content = files[problem_id]
        (tmp / name).write_text(content, encoding="utf-8")
        return run([cli, "predict", "--model", "no-model", "--file", str(tmp / name)], tmp)
    commands = {
        "predict-batch-size": [cli, "predict", "--batch-size", "-1", "a review"],  # it once exited 0, writing nothing
        "predict-threads": [cli, "predict", "--threads", "-1", "a review"],
        "predict-stdin-closed": ["sh", "-c", 'exec "$0" predict --model no-model <&-', cli],
        "predict-stdin-not-utf8": ["sh", "-c", 'printf "good\\nt\\351t\\351\\n" | "$0" predict --model no-model', cli],
        "predict-argv-not-utf8": [cli, "predict", "--model", "no-model", "caf\udce9"],  # argv bytes b"caf\xe9"
        "serve-bad-port": [cli, "serve", "--model", "no-model", "--port", "70000"],
        "serve-max-batch": [cli, "serve", "--model", "no-model", "--max-batch", "0"],
        "serve-max-wait-ms": [cli, "serve", "--model", "no-model", "--max-wait-ms", "1e300"],
        "serve-body-timeout": [cli, "serve", "--model", "no-model", "--body-timeout", "60"],
        "serve-wait-vs-timeout": [cli, "serve", "--model", "no-model", "--request-timeout", "0.5", "--max-wait-ms",
                                  "500"],
        "serve-allowed-hosts": [cli, "serve", "--model", "no-model", "--allowed-hosts", "localhost,exa mple"],
        "serve-max-connections-per-client": [cli, "serve", "--model", "no-model", "--max-connections-per-client",
                                             "0"],
        "compare-input-missing": [cli, "compare", "--input", "missing.json"],
        "aspect-with-file": [cli, "predict", "--model", "no-model", "--aspect", "food", "--file", "in.txt"],
        "summary-before-run": [cli, "summary"],  # an empty folder: nothing the pipeline writes
    }
    if problem_id in commands:
        return run(commands[problem_id], tmp)
    from predict_problems import OUTPUT_PROBLEMS, output_problem  # predict --output / --resume: there

    if problem_id in OUTPUT_PROBLEMS:
        return output_problem(problem_id, tmp, run)
    if problem_id == "compare-without-dvc":
        return run([cli, "compare"], tmp, {"PATH": str(tmp)})
    if problem_id == "serve-port-in-use":
        import socket

        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            result = run([cli, "serve", "--model", "no-model", "--port", str(busy.getsockname()[1])], tmp)
        assert result.returncode == 4, result.stderr
        return result
    raise KeyError(problem_id)


CLOUD_CASES = {  # id -> (the repo's DVC remote, preflight's overrides, environment)
    "remote-missing": (None, [], {}),
    "remote-plugin-missing": ("oss://bucket/dvc", [], {}),
    # no key anywhere (no variables, an empty HOME) and never the instance-metadata address: fails before any request
    "remote-credentials": ("s3://bucket/dvc", [], {"AWS_EC2_METADATA_DISABLED": "true"}),
    "raw-data-untracked": (None, ["experiment=absa_mams_llama31_8b"], {}),
}


def cloud_case(problem_id: str, tmp: Path):
    """`qlora-sentiment preflight` (cloud/sky-train.yaml's first step) in a clone-like repo with the project's conf/."""
    remote, overrides, env = CLOUD_CASES[problem_id]
    repo = tmp / "repo"
    shutil.copytree(ROOT / "conf", repo / "conf")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    if remote:
        run(["dvc", "remote", "add", "-d", "storage", remote], repo)
        if remote.startswith("s3://"):  # were a request sent, it would go nowhere but this machine
            run(["dvc", "remote", "modify", "storage", "endpointurl", f"http://127.0.0.1:{free_port()}"], repo)
    clean = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if k in os.environ}
    args = [a for o in overrides for a in ("-S", o)]
    return run([str(BIN / "qlora-sentiment"), "preflight", *args], repo, {**clean, "HOME": str(tmp), **env})


TRAINED_CASES = ("onnx-backend-on-adapter", "export-without-onnx", "ray-cluster-unreachable",
                 "aspects-on-sentence-model", "merge-host-memory", *TRAINED_OUTPUT_PROBLEMS)
# the session's tiny aspect_term export: predict's refusals of bad aspects
# an aspect of 200 CJK characters in a text that holds it: 600 tokens of the tiny tokenizer, over max_length (96)
ASPECT_TEXTS = {"aspect-too-many-tokens": "\u597d" * 200}
ASPECT_CASES = {"aspect-too-many-tokens": ["--aspect", "\u597d" * 200],
                "aspect-not-in-text": ["--aspect", "food", "--aspect", "wine"], "aspect-model-without-aspects": [],
                "aspect-empty": ["--aspect", " "]}


def trained_case(problem_id: str, tmp: Path, trained: Path):
    cli = str(BIN / "qlora-sentiment")
    if problem_id in TRAINED_OUTPUT_PROBLEMS:  # a full disk, an input changed mid-run
        return trained_output_problem(problem_id, tmp, trained, run)
    if problem_id == "ray-cluster-unreachable":  # a port nothing listens on: refused at once
        (tmp / "in.txt").write_text("good\n")
        return run([cli, "predict", "--model", str(trained / "export"), "--file", str(tmp / "in.txt"), "--ray",
                    f"127.0.0.1:{free_port()}", "--output-dir", str(tmp / "out")], tmp)
    if problem_id == "merge-host-memory":
        # the real export stage on the tiny adapter (~1 MB to merge), on a machine with 64 KiB of RAM available
        from helpers import tiny_params

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
    if problem_id == "aspects-on-sentence-model":
        return run([cli, "predict", "--model", str(trained / "export"), "--aspect", "film", "a fine film"], tmp)
    if problem_id == "onnx-backend-on-adapter":
        model = ["--model", str(trained / "adapter"), "--base", str(trained / "base")]
    else:  # an export copied without its ONNX copy (as one made before it existed)
        shutil.copytree(trained / "export", tmp / "export", ignore=shutil.ignore_patterns("onnx"))
        model = ["--model", str(tmp / "export")]
    return run([cli, "predict", *model, "--backend", "onnx", "a fine film"], tmp)


@pytest.mark.parametrize("problem", CATALOGUE, ids=[p.id for p in CATALOGUE])
def test_bad_input_gives_one_clear_line(problem, tmp_path, tiny_llama, request):
    if problem.id in DOOR_CASES:  # the web API: a real server's 4xx, its one-line detail the message
        status, _, body = door_answer(request.getfixturevalue("door_server"), problem.id)
        assert (400 <= status < 500 or problem.id == "serve-overloaded") and set(body) == {"detail", "field"}, body
        assert problem.message in body["detail"] and "\n" not in body["detail"], body
        return
    if problem.id in TRAINED_CASES:  # a real adapter and export (the session's tiny trained model)
        result = trained_case(problem.id, tmp_path, request.getfixturevalue("trained"))
    elif problem.id in ASPECT_CASES:
        export = request.getfixturevalue("trained_aspects").root / "export"
        result = run([str(BIN / "qlora-sentiment"), "predict", "--model", str(export), *ASPECT_CASES[problem.id],
                      ASPECT_TEXTS.get(problem.id, "the food was great but the service was awful")], tmp_path)
    else:
        result = trigger(problem.id, tmp_path, tiny_llama)
    assert_one_error_line(result, problem.message)


def test_debug_shows_the_traceback(tmp_path):
    params = write_params(tmp_path, patched(("train.learnig_rate", 1e-4)))
    result = run([str(BIN / "qlora-sentiment"), "--debug", "check", "--params", str(params)], tmp_path)
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_catalogue_is_big_enough_and_the_docs_page_matches_it():
    assert len(CATALOGUE) >= 20 and len({p.id for p in CATALOGUE}) == len(CATALOGUE)
    sys.path.insert(0, str(ROOT / "tools"))
    from troubleshooting import with_section

    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert with_section(page) == page, "docs/troubleshooting.md is stale: run python tools/troubleshooting.py"
