"""Shared fixtures: a tiny random llama (real architecture, real tokenizer files) and tiny params."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# One torch thread per test process: oversubscribing 2 cores is far slower than using one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("positive negative neutral review movie film sentiment classify instruction great awful boring "
         "brilliant dull fun bad good love hate but not very").split()


def _tokenizer_corpus() -> list[str]:
    from qlora_sentiment.sources import OFFLINE_CORPORA, package_file

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


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def tiny_params(model_dir: Path, **overrides) -> dict:
    """params.yaml for a run of a few seconds: tiny local model, small offline data, a few steps."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"]["torch_threads"] = 1
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


@pytest.fixture()
def python_bin_env() -> dict:
    """Environment for subprocesses: this interpreter's bin first on PATH (dvc runs `python stages/...`)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "ci"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "ci@example.invalid"
    return env


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


def train_tiny(tmp_path, model_dir, **overrides):
    from qlora_sentiment.base_model import load_ref, materialize
    from qlora_sentiment.config import params_from_dict
    from qlora_sentiment.data import prepare
    from qlora_sentiment.runtime import setup_torch
    from qlora_sentiment.training import train

    os.chdir(tmp_path)  # DVCLive inspects the git repo of the working directory; keep it out of ours
    raw = tiny_params(model_dir, **overrides)
    raw["data"].update(source="local", name=str(easy_reviews(tmp_path / "easy.jsonl")), label_column="label",
                       group_column=None)
    params = params_from_dict(raw)
    setup_torch(1, params.seed)
    materialize(params.model, tmp_path / "base")
    records, _ = prepare(params.data, params.seed)
    result = train(params, load_ref(tmp_path / "base"), records["train"], records["validation"],
                   tmp_path / "adapter", tmp_path / "live", tmp_path / "checkpoints")
    return params, records, result
