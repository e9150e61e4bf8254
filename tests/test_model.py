"""Real 4-bit layers, real PEFT adapters, on a tiny random llama: training moves the loss, adapters round-trip."""

import csv
import json
import sys

import numpy as np
import pytest

from helpers import section, tiny_params, train_tiny
from qlora_sentiment.model.base import load_ref, materialize
from qlora_sentiment.config import params_from_dict
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.evaluation.analysis import predict_split, summarize
from qlora_sentiment.model.adapter import load_scorer
from qlora_sentiment.core.runtime import setup_stage
from qlora_sentiment.model.scoring import LabelScorer


def _losses(live_dir):
    with open(live_dir / "plots" / "metrics" / "train" / "loss.tsv") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle, delimiter="\t")]


@pytest.mark.parametrize("head,optimizer,used", [("generative", "adamw_torch", "adamw_torch"),
                                                 ("classifier", "paged_adamw_8bit", "adamw_8bit")])
def test_train_4bit_loss_falls_and_adapter_reloads(tmp_path, tiny_llama, head, optimizer, used):
    params, records, result = train_tiny(tmp_path, tiny_llama, **{"model.head": head, "train.max_steps": 12,
                                                              "train.optimizer": optimizer,
                                                              "quantization.compute_dtype": "float32",
                                                              "train.validation_points": 4})
    assert result.record.optimizer.model_dump() == {"requested": optimizer, "used": used}
    assert result.record.device == "cpu" and result.record.global_step == 12
    assert any(type(m).__name__ == "Linear4bit" for m in result.model.modules()), "no real 4-bit layers"
    losses = _losses(tmp_path / "live")
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    # Only curves that inform (`dvc plots show`): the loss per logged step, and validation loss and accuracy at
    # train.validation_points (4) evenly spaced steps; no epoch, learning-rate or one-point panels.
    plots = tmp_path / "live" / "plots" / "metrics"
    assert sorted(p.relative_to(plots).as_posix() for p in plots.rglob("*.tsv")) == \
        ["eval/accuracy.tsv", "eval/loss.tsv", "train/loss.tsv"]
    with open(plots / "eval" / "accuracy.tsv") as handle:
        curve = [(int(row["step"]), float(row["accuracy"])) for row in csv.DictReader(handle, delimiter="\t")]
    assert [step for step, _ in curve] == [3, 6, 9, 12]
    # the tiny validation split (16) is smaller than train.validation_subset: its last point is the final score
    assert curve[-1][1] == pytest.approx(result.record.validation["accuracy"])
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "checkpoints").exists(), "scratch checkpoints left behind"

    texts = [r["text"] for r in records["test"]]
    in_memory = LabelScorer(result.model, result.tokenizer, head, params.data.labels, params.prompt.template,
                            params.train.max_length).predict_proba(texts)
    reloaded = load_scorer(tmp_path / "adapter", tmp_path / "base")
    assert any(type(m).__name__ == "Linear4bit" for m in reloaded.model.modules())
    # The classifier's score head must travel with the adapter, or reloading gives a fresh random head (which
    # moves probabilities by tenths). bitsandbytes' CPU path re-derives the double-quantized absmax after
    # training-mode forwards slightly differently from a fresh load (measured <= 2.3e-4), hence atol 1e-3.
    again = reloaded.predict_proba(texts)
    np.testing.assert_allclose(again, in_memory, atol=1e-3)
    assert (again.argmax(1) == in_memory.argmax(1)).all()
    second = load_scorer(tmp_path / "adapter", tmp_path / "base").predict_proba(texts)
    np.testing.assert_array_equal(second, again)  # reloading is exact
    predictions = predict_split(reloaded, records["test"], batch_size=7)
    assert [p["id"] for p in predictions] == [r["id"] for r in records["test"]]
    np.testing.assert_allclose([[p["probabilities"][lab] for lab in params.data.labels] for p in predictions],
                               again, atol=1e-6)
    metrics = summarize(predictions, list(params.data.labels), seed=0)
    hits = [p["predicted"] == r["label"] for p, r in zip(predictions, records["test"])]
    assert metrics["n"] == len(texts) and metrics["accuracy"] == pytest.approx(sum(hits) / len(hits))
    # Validation label scores recorded by train (what a search picks by) = evaluate's scoring on that split.
    val = summarize(predict_split(reloaded, records["validation"], batch_size=7), list(params.data.labels), seed=0)
    assert result.record.validation["accuracy"] == pytest.approx(val["accuracy"])
    assert result.record.validation["macro_f1"] == pytest.approx(val["macro"]["f1"])
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["validation"] == result.record.validation
    assert set(summary["train"]) == {"loss", "train_loss"} and set(summary["eval"]) == {"loss", "accuracy"}


@pytest.mark.parametrize("head", ["generative", "classifier"])
def test_bf16_mixed_precision_trains_scores_and_reloads(tmp_path, tiny_llama, head):
    """compute_dtype bfloat16 on the CPU: 4-bit layers compute in bf16 under autocast, LoRA (and the classifier's
    score layer) keep float32 weights; the classifier once crashed there (float != BFloat16 in the score layer)."""
    import torch

    params, records, result = train_tiny(tmp_path, tiny_llama, **{"model.head": head, "train.max_steps": 12,
                                                              "quantization.compute_dtype": "bfloat16"})
    assert result.record.quantization.compute_dtype == "bfloat16"
    trainable = {p.dtype for p in result.model.parameters() if p.requires_grad}
    assert trainable == {torch.float32}, trainable  # master weights: bf16 updates of 5e-3 would round away
    losses = _losses(tmp_path / "live")
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    texts = [r["text"] for r in records["test"]]
    in_memory = LabelScorer(result.model, result.tokenizer, head, params.data.labels, params.prompt.template,
                            params.train.max_length).predict_proba(texts)
    reloaded = load_scorer(tmp_path / "adapter", tmp_path / "base")
    assert reloaded.model.dtype == torch.bfloat16 or any(p.dtype == torch.bfloat16 for p in reloaded.model.parameters())
    again = reloaded.predict_proba(texts)
    # the reload is all-bf16 around the float32 adapter; in training the norms were float32 (bf16 rounding: 2^-8)
    np.testing.assert_allclose(again, in_memory, atol=0.05)
    assert (again.argmax(1) == in_memory.argmax(1)).mean() >= 0.9


def test_single_token_fast_path_equals_full_answer_scoring(tmp_path, tiny_llama):
    """The one-pass next-token shortcut must give the same probabilities as scoring whole answers."""
    params, records, result = train_tiny(tmp_path, tiny_llama, **{"train.max_steps": 2, "model.head": "generative"})
    scorer = LabelScorer(result.model, result.tokenizer, "generative", params.data.labels, params.prompt.template, 96)
    assert scorer.single_token
    texts = [r["text"] for r in records["test"]][:12]
    fast = scorer.predict_proba(texts, batch_size=5)
    scorer.single_token = False
    full = scorer.predict_proba(texts, batch_size=5)
    np.testing.assert_allclose(fast, full, atol=1e-4)
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, atol=1e-6)
    # Batch composition (padding) must not change a prediction.
    scorer.single_token = True
    np.testing.assert_allclose(scorer.predict_proba(texts, batch_size=1), fast, atol=1e-4)


def test_4bit_without_bitsandbytes_fails_clearly(monkeypatch):
    from qlora_sentiment.model.loading import bnb_config

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now raises ImportError
    with pytest.raises(ModelError, match="quantization.load_in_4bit: true, but bitsandbytes cannot load"):
        bnb_config(section("quantization"))
    assert bnb_config(section("quantization", load_in_4bit=False)) is None


def test_local_model_folder_checks(tmp_path, tiny_llama):
    with pytest.raises(ModelError, match="model folder not found"):
        materialize(section("model", source="local", name=str(tmp_path / "nope")), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="has no weights"):
        materialize(section("model", source="local", name=str(tmp_path / "empty")), tmp_path / "out")
    info = materialize(section("model", source="local", name=str(tiny_llama)), tmp_path / "out")
    assert load_ref(tmp_path / "out").path == str(tiny_llama.resolve()) and len(info["fingerprint"]) == 64


def test_paged_optimizer_on_cpu_is_stated_not_silent(caplog):
    import logging

    from qlora_sentiment.training.trainer import effective_optimizer

    with caplog.at_level(logging.WARNING):
        assert effective_optimizer("paged_adamw_8bit", cuda=False) == "adamw_8bit"
    assert "train.optimizer: paged_adamw_8bit needs CUDA" in caplog.text and "uses adamw_8bit instead" in caplog.text
    assert effective_optimizer("paged_adamw_8bit", cuda=True) == "paged_adamw_8bit"
    assert effective_optimizer("adamw_torch", cuda=False) == "adamw_torch"


@pytest.mark.parametrize("head", ["generative", "classifier"])
def test_baseline_is_the_untuned_4bit_base_and_reproducible(tmp_path, tiny_llama, head):
    """The baseline scores the base model itself (no LoRA), in 4-bit, the same on every run of the same seed; for
    either head of a causal LM that is the zero-shot prompt answer."""
    from qlora_sentiment.model.adapter import load_baseline_scorer

    params = params_from_dict(tiny_params(tiny_llama, **{"model.head": head}))
    materialize(params.model, tmp_path / "base")
    texts = ["a brilliant film", "dull and bad", "not very good but fun"]
    runs = []
    for _ in range(2):
        _, params = setup_stage(params, threads=1)
        scorer = load_baseline_scorer(tmp_path / "base", params)
        assert any(type(m).__name__ == "Linear4bit" for m in scorer.model.modules())
        assert not any("lora" in name for name, _ in scorer.model.named_modules())
        # an untrained classifier head is a coin toss: on a causal LM the baseline is the zero-shot prompt answer
        assert scorer.head == "generative" and type(scorer.model).__name__ == "LlamaForCausalLM"
        runs.append(scorer.predict_proba(texts))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_allclose(runs[0].sum(axis=1), 1.0, atol=1e-9)


def test_validation_curve_steps_are_evenly_spaced_and_end_at_the_last_step():
    from qlora_sentiment.training.run import curve_steps

    assert curve_steps(5, 375) == [75, 150, 225, 300, 375]
    assert curve_steps(5, 3) == [1, 2, 3]  # fewer steps than points: each step once
    assert curve_steps(0, 375) == [] and curve_steps(5, 0) == []
