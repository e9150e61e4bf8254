"""The scorer (model/scoring.py) on the tiny llama: no KV cache in any forward pass, and validation during training
scored in evaluate's precision (bf16 here: k-bit training holds the frozen weights in float32, evaluate in bf16)."""

import os

import numpy as np
import pytest

from helpers import train_tiny
from qlora_sentiment.model.adapter import load_scorer
from qlora_sentiment.training.run import validation_scorer


@pytest.fixture(scope="module", params=["generative", "classifier"])
def bf16_run(request, tmp_path_factory, tiny_llama):
    """A bf16 adapter of a few steps: (params, validation rows, the model as training left it, the adapter folder)."""
    root = tmp_path_factory.mktemp(f"scoring-{request.param}")
    cwd = os.getcwd()
    try:
        params, records, result = train_tiny(root, tiny_llama, **{"model.head": request.param, "train.max_steps": 2,
                                                              "quantization.compute_dtype": "bfloat16"})
    finally:
        os.chdir(cwd)
    return params, records["validation"], result, root


def _watch_cache(scorer):
    """Every forward of the scorer's decoder (the model under the head): the use_cache it was given and whether its
    output carries a cache."""
    seen = []
    decoder = scorer.model.get_base_model().base_model  # LlamaModel, under the LM or classification head

    def hook(module, args, kwargs, output):
        cache = any(getattr(output, key, None) is not None for key in ("cache", "past_key_values"))
        seen.append((kwargs.get("use_cache"), cache))

    return seen, decoder.register_forward_hook(hook, with_kwargs=True)


def test_scorer_builds_no_kv_cache(bf16_run):
    """Validation-time and evaluate-time scorers, every forward path (the generative head's whole-answer path
    too), pass use_cache=False and get no cache back (transformers would otherwise fill one from config.use_cache)."""
    params, rows, result, root = bf16_run
    for scorer in (validation_scorer(result.model, result.tokenizer, params),
                   load_scorer(root / "adapter", root / "base")):
        paths = [True, False] if scorer.head == "generative" else [None]
        for single in paths:
            if single is not None:
                scorer.single_token = single
            seen, handle = _watch_cache(scorer)
            try:
                scorer.score_rows(rows[:6], batch_size=4)
            finally:
                handle.remove()
            assert len(seen) == 2, seen  # two batches
            assert seen == [(False, False)] * len(seen), seen


def test_validation_scores_in_evaluates_precision(bf16_run):
    """One adapter, scored as the training run scores validation (its float32-prepared model) and as evaluate does
    (loaded fresh): the same probabilities. The weights training goes on with are left exactly as they were."""
    import torch

    params, rows, result, root = bf16_run
    model = result.model
    frozen = {name: p for name, p in model.named_parameters() if not p.requires_grad and p.is_floating_point()}
    assert {p.dtype for p in frozen.values()} == {torch.float32}  # PEFT's k-bit preparation upcast them
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    during = validation_scorer(model, result.tokenizer, params).score_rows(rows, params.eval.batch_size)
    evaluated = load_scorer(root / "adapter", root / "base").score_rows(rows, params.eval.batch_size)
    np.testing.assert_allclose(during, evaluated, rtol=0, atol=1e-6)

    for name, p in model.named_parameters():
        assert p.dtype == before[name].dtype and torch.equal(p, before[name]), name
