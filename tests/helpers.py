"""Helpers shared by the tests (fixtures live in conftest.py): the tiny random llama, tiny params, a tiny
project in a temporary git repo, and typed config sections built from conf/ (the one source of defaults)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "qlora-sentiment")


@lru_cache(maxsize=None)
def conf_defaults() -> dict:
    """conf/ composed with no overrides: what params.yaml holds."""
    from qlora_sentiment.config import compose

    return compose(ROOT / "conf")


def section(name: str, /, **overrides):
    """A typed config section with conf/'s values, some replaced; nested mappings (data.clean) are merged."""
    import qlora_sentiment.config as config

    classes = {"model": config.ModelConfig, "quantization": config.QuantizationConfig, "data": config.DataConfig,
               "lora": config.LoraConfig, "train": config.TrainConfig, "prompt": config.PromptConfig}
    values = dict(conf_defaults()[name])
    for key, value in overrides.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) \
            and key != "label_map" and key != "splits" else value
    return classes[name].model_validate(values)


def data_config(**overrides):
    """conf/data/_defaults.yaml (every data key; presets start from it) without the size caps, some keys replaced."""
    from qlora_sentiment.config import DataConfig

    values = {**yaml.safe_load((ROOT / "conf/data/_defaults.yaml").read_text()),
              "max_train": None, "max_validation": None, "max_test": None}
    for key, value in overrides.items():
        values[key] = {**values[key], **value} if key in ("clean", "split") else value
    return DataConfig.model_validate(values)


WORDS = ("positive negative neutral review movie film sentiment classify instruction great awful boring "
         "brilliant dull fun bad good love hate but not very").split()


def _tokenizer_corpus() -> list[str]:
    from qlora_sentiment.core.packages import package_file
    from qlora_sentiment.data.sources import OFFLINE_CORPORA

    import pandas as pd

    corpus = OFFLINE_CORPORA["rotten_tomatoes"]
    texts = pd.read_csv(package_file(corpus.package, corpus.files["all"]))["text"].astype(str).tolist()[:1500]
    # Repeat the label words so ' positive' etc. become single tokens, as in real LLM vocabularies.
    return texts + [" ".join(WORDS)] * 200 + ["### Instruction:\n### Review:\n### Sentiment: positive"] * 50


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(_tokenizer_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_params(model_dir: Path, **overrides) -> dict:
    """params.yaml for a run of a few seconds: tiny local model, small offline data, a few steps."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"]["torch_threads"] = 1
    # float32: test tolerances must not depend on the machine's bf16 flags (bf16 has its own tests)
    params["quantization"]["compute_dtype"] = "float32"
    params["lora"]["last_n_layers"] = 1  # the tiny llama has 2 blocks
    params["model"].update(source="local", name=str(model_dir))
    params["data"].update(max_train=64, max_validation=16, max_test=32)
    params["train"].update(max_steps=6, batch_size=8, learning_rate=5.0e-3, warmup_steps=0, save_steps=3,
                           logging_steps=1, max_length=96)
    params["eval"]["batch_size"] = 16
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        params[section][key] = value
    return params


PROJECT_FILES = ["dvc.yaml", "stages", "src", "assets", ".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore",
                 "data/raw/README.md", "models/local/README.md", "models/.gitignore"]
# Training long enough to be killed between two checkpoints (tests/test_resume.py): conftest.reproduced's params.
RESUMABLE = {"train.max_steps": 30, "train.save_steps": 5}
TINY_MODEL = "models/local/tiny-llama"  # where make_project puts the tiny model (a base_model dep)


def subprocess_env() -> dict:
    """Environment for subprocesses: this interpreter's bin first on PATH (dvc runs `python stages/...`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "ci"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "ci@example.invalid"
    return env


def run(cmd, cwd, env, check=True, text=True):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=text, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]!s}\n{result.stderr[-3000:]!s}")
    return result


def copy_project(repo: Path, names=PROJECT_FILES) -> None:
    """This checkout's project files (or `names` of it) into `repo`, without byte-code caches."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif source.exists():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)


def make_project(repo, tiny_llama, env, **overrides):
    from qlora_sentiment.config import compose, to_yaml

    copy_project(repo)
    # A local base model lives in models/local/, a dependency of the base_model stage.
    shutil.copytree(tiny_llama, repo / TINY_MODEL)
    # DVC composes params.yaml from conf/ (Hydra) on `dvc exp run -S`: the tiny project's conf is its params.
    (repo / "conf").mkdir()
    (repo / "conf/config.yaml").write_text(yaml.safe_dump(tiny_params(TINY_MODEL, **overrides), sort_keys=False))
    (repo / "params.yaml").write_text(to_yaml(compose(repo / "conf")))
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny project"], repo, env)
    return repo


def repro_in_process(repo: Path, overrides: list[str]) -> list[str]:
    """What `dvc exp run -S o1 -S o2 ...` runs, in this process: params.yaml composed from the repo's conf/ with
    the overrides (Hydra's compose API, as DVC does), then every stage's command of the repo's dvc.yaml, in its
    order, through the stage script's own main(argv). The same code and arguments as the real pipeline without a
    fresh interpreter per stage (~10 s of imports each on the slowest machine); for variants of a pipeline whose
    DVC wiring (deps, run cache, locks, queue) tests/test_pipeline.py and test_experiments.py run for real.
    Returns the stage names run."""
    import importlib.util
    import shlex

    from qlora_sentiment.config import compose, to_yaml

    (repo / "params.yaml").write_text(to_yaml(compose(repo / "conf", overrides)))
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    cwd = os.getcwd()
    os.chdir(repo)  # the stages' relative paths; DVCLive inspects the git repo of the working directory
    try:
        for name, stage in stages.items():
            python, script, *argv = shlex.split(stage["cmd"])
            assert python == "python" and script.startswith("stages/"), stage["cmd"]
            spec = importlib.util.spec_from_file_location(f"stage_{name}", repo / script)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.main(argv)
    finally:
        os.chdir(cwd)
    return list(stages)


def easy_reviews(path):
    """A learnable signal for a random tiny model: the sentiment word decides the label."""
    import json
    import random

    rng = random.Random(0)
    rows = []
    for i in range(240):
        label = "positive" if i % 2 else "negative"
        word = rng.choice(["great", "brilliant", "fun", "good"] if i % 2 else ["awful", "dull", "boring", "bad"])
        rows.append({"text": f"review {i}: the {rng.choice(['movie', 'film'])} was {word}", "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ASPECT_WORDS = {"negative": ["awful", "bad", "dull"], "neutral": ["okay", "fine", "average"],
                "positive": ["great", "good", "brilliant"]}


def easy_aspects_xml(path, sentences: int = 120, seed: int = 0):
    """SemEval-2014 XML (MAMS's format): two aspects per sentence with different polarities; the word after each
    aspect decides its label, so only a model that reads which aspect is asked about gets both right."""
    import random
    from xml.sax.saxutils import quoteattr

    rng = random.Random(seed)
    labels = list(ASPECT_WORDS)
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<sentences>"]
    for i in range(sentences):
        first, second = rng.sample(["food", "service", "price", "decor", "staff", "wine"], 2)
        a, b = rng.sample(labels, 2)
        text = (f"at table {seed * 1000 + i} the {first} was {rng.choice(ASPECT_WORDS[a])} but the {second} was "
                f"{rng.choice(ASPECT_WORDS[b])}")  # the table number: no two sentences alike
        out.append(f"<sentence id=\"{seed}-{i}\"><text>{text}</text><aspectTerms>")
        for term, label in ((first, a), (second, b)):
            start = text.index(f"the {term} ") + 4
            out.append(f"<aspectTerm term={quoteattr(term)} polarity=\"{label}\" from=\"{start}\" "
                       f"to=\"{start + len(term)}\"/>")
        out.append("</aspectTerms></sentence>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out + ["</sentences>"]) + "\n")
    return path


def aspect_overrides(name: str) -> dict:
    """tiny_params overrides for the aspect task on easy_aspects_xml files in the folder `name`."""
    return {"data.task": "aspect_term", "data.source": "local", "data.name": str(name),
            "data.splits": {"train": "train.xml", "test": "test.xml"}, "data.labels": list(ASPECT_WORDS),
            "data.group_column": None}


def stages_in_process(params, folder: Path, threads: int | None = None):
    """What the base_model, prepare and train stages run, in this process: folder/base, folder/adapter (scratch
    checkpoints in folder/checkpoints); (params as they ran, records, the training result). Relative data paths
    resolve against the working directory, which the caller sets (DVCLive also inspects its git repo)."""
    from qlora_sentiment.core.runtime import setup_stage
    from qlora_sentiment.data.prepare import prepare
    from qlora_sentiment.model.base import load_ref, materialize
    from qlora_sentiment.training.outputs import save_adapter
    from qlora_sentiment.training.run import train

    _, params = setup_stage(params, threads=threads)
    materialize(params.model, folder / "base")
    records, _ = prepare(params.data, params.seed)
    result = train(params, load_ref(folder / "base"), records["train"], records["validation"], folder / "checkpoints")
    save_adapter(result.model, result.tokenizer, folder / "adapter", result.record)
    return params, records, result


def train_tiny(tmp_path, model_dir, **overrides):
    from qlora_sentiment.config import params_from_dict
    from qlora_sentiment.training.outputs import write_curves

    os.chdir(tmp_path)  # DVCLive inspects the git repo of the working directory; keep it out of ours
    raw = tiny_params(model_dir, **overrides)
    if raw["data"]["task"] == "sentence":
        raw["data"].update(source="local", name=str(easy_reviews(tmp_path / "easy.jsonl")), label_column="label",
                           group_column=None)
    else:  # the aspect task: the easy aspects in SemEval XML
        folder = Path(raw["data"]["name"])
        easy_aspects_xml(folder / "train.xml")
        easy_aspects_xml(folder / "test.xml", sentences=20, seed=1)
    params, records, result = stages_in_process(params_from_dict(raw), tmp_path, threads=1)
    # what the train stage writes beside the adapter (and removes: the scratch checkpoints)
    write_curves(tmp_path / "live", result.log_history, result.record)
    shutil.rmtree(tmp_path / "checkpoints", ignore_errors=True)
    return params, records, result


def cli(*args, stdin=None, cwd=None):
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, timeout=300, cwd=cwd)


@contextmanager
def serving(*args):
    """`qlora-sentiment serve ARGS` on a free port, until /ready answers 200 (/health answers while it loads):
    yields its URL, stops it after."""
    port = free_port()
    proc = subprocess.Popen([CLI, "serve", *args, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(url, "/ready", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until(url, path, proc, seconds=120):
    """Until GET url+path answers 200; the server exiting first, or the time running out, fails the test."""
    import time

    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}): {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}{path} not 200 within {seconds} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every plot dvc.yaml declares, as `dvc plots diff` names it in the page: vega plots by div id, images by file.
DECLARED_VEGA_PLOTS = [
    "plots_confusion_json", "confusion_normalized", "plots_roc_positive_json", "plots_precision_recall_positive_json",
    "reliability",
    "metrics_train_plots_metrics_train_loss_tsv", "metrics_train_plots_metrics_eval_loss_tsv",
    "metrics_train_plots_metrics_eval_accuracy_tsv",
]
DECLARED_IMAGES = ["plots_confusion_matrix.png", "plots_roc.png", "plots_precision_recall.png", "plots_calibration.png",
                   "plots_data_train.png", "plots_data_validation.png", "plots_data_test.png"]


def check_offline_plots_page(index, revisions):
    html = index.read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html and "<script src=" not in html, "the page would load scripts from the internet"
    assert "vegaEmbed" in html and "vega-lite" in html  # inlined by assets/dvc_plots_offline.html
    for plot in DECLARED_VEGA_PLOTS:
        assert f'<div id = "{plot}"' in html, f"plot {plot} missing from the page"
    for image in DECLARED_IMAGES:
        for rev in revisions:
            assert f'src="static/{rev}_{image}"' in html and (index.parent / "static" / f"{rev}_{image}").is_file()
    vega_plots = html.count("vegaEmbed('#")
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium to check the plots page (make test installs it)")
        pytest.skip("no chromium here (make test installs Debian's chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=15000", "--window-size=1400,6000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", index.as_uri()], capture_output=True, text=True,
                         timeout=180).stdout
    # vega-embed replaces each plot's script with a drawn canvas once vega has parsed and rendered the spec.
    drawn = len(re.findall(r'<canvas[^>]*class="marks"', dom))
    assert drawn >= vega_plots, f"only {drawn} vega plots drawn, expected {vega_plots}"
    shot = index.parent / "screenshot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", index.as_uri()], capture_output=True, timeout=180)
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    ink = sum(pixels.histogram()[:200])  # pixels clearly darker than the white page
    assert ink > 0.01 * pixels.width * pixels.height, "the screenshot is a blank page"
