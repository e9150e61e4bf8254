"""Aspect-based sentiment (data.task aspect_term): prepared rows, training, the adapter, its export (torch, ONNX
Runtime, transformers' pipeline with a text pair), the CLI's --aspect and its refusals, on the tiny model; and a
real `dvc exp run -S data=mams_atsa` through the project's conf/."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from types import SimpleNamespace

import pytest

from helpers import ROOT, TINY_MODEL, cli, easy_aspects_xml, make_project, repro_in_process, run

TEXT = "the food was great but the service was awful"


def test_prepared_rows_keep_sentences_together(trained_aspects):
    records = trained_aspects.records
    assert trained_aspects.record.task == "aspect_term"
    assert {"id", "text", "aspect", "label", "group"} <= set(records["train"][0])
    assert all(r["aspect"] in r["text"] for rows in records.values() for r in rows)
    assert all("aspect_train_count" in r for r in records["test"])
    train_groups = {r["group"] for r in records["train"]}
    assert not train_groups & {r["group"] for r in records["validation"]}  # carved by sentence
    for name in ("train", "test"):  # capped (data.max_train, max_test) by whole sentences: two aspects each
        assert set(Counter(r["group"] for r in records[name]).values()) == {2}, name
    assert len({r["id"] for r in records["train"]}) == len(records["train"])  # two aspects, two ids


def test_adapter_export_onnx_and_pipeline_agree(trained_aspects):
    from transformers import pipeline

    from qlora_sentiment import SentimentAnalyzer

    root = trained_aspects.root
    aspects = ["service", "food", "service"]  # order kept, repeats allowed
    adapter = SentimentAnalyzer.from_pretrained(root / "adapter", root / "base").predict(TEXT, aspects=aspects)
    assert [p["aspect"] for p in adapter] == aspects
    assert adapter[0]["probabilities"] == adapter[2]["probabilities"]
    for backend in ("torch", "onnx"):
        export = SentimentAnalyzer.from_pretrained(root / "export", backend=backend)
        assert export.describe()["task"] == "aspect_term"
        got = export.predict(TEXT, aspects=aspects)
        for a, b in zip(adapter, got):
            assert a["label"] == b["label"]
            assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-3
    # a standard sentence-pair classifier: transformers' own pipeline, (text, aspect) as text and text_pair
    classify = pipeline("text-classification", model=str(root / "export"), top_k=None)
    scores = {s["label"]: s["score"] for s in classify({"text": TEXT, "text_pair": "food"})}
    assert max(abs(scores[k] - adapter[1]["probabilities"][k]) for k in scores) < 1e-3
    card = (root / "export" / "README.md").read_text()  # the model card shows the pair, as the code above calls it
    assert '"text_pair": "service"' in card and 'aspects=["food", "service"]' in card


def test_aspect_prompt_travels_into_the_export_tokenizer(tiny_llama):
    """The generative head's export wraps (review, aspect) in the aspect template through the tokenizer's pair
    template; check_wrapping compares it with the scorer's ids (review cut first, aspect whole)."""
    from transformers import AutoTokenizer

    from qlora_sentiment.model.classifier import check_wrapping, wrap_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    template = "Review: {text}\nAspect: {aspect}\nSentiment:"
    formatter = PromptFormatter(tokenizer, template, ["negative", "neutral", "positive"], 48)
    wrapped = wrap_tokenizer(tokenizer, formatter)
    check_wrapping(wrapped, formatter, SimpleNamespace(clean_texts=list))
    ids = formatter.encode([TEXT], ["service"])[0]
    assert wrapped(TEXT, "service", truncation="only_first")["input_ids"] == ids
    assert tokenizer.decode(ids).endswith("Aspect: service\nSentiment:")


def test_cli_labels_each_aspect_and_refuses_what_it_cannot(trained_aspects):
    export = str(trained_aspects.root / "export")
    out = cli("predict", "--model", export, "--aspect", "food", "--aspect", "service", TEXT)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["text"], r["aspect"]) for r in rows] == [(TEXT, "food"), (TEXT, "service")]
    table = cli("predict", "--model", export, "--format", "csv", "--aspect", "food", TEXT)
    assert table.stdout.splitlines()[0] == "text,aspect,label,p_negative,p_neutral,p_positive"
    for args, expected in [
        (["--aspect", "food", "--aspect", "wine", TEXT], "aspects[1]: 'wine' does not occur in the text"),
        (["--aspect", " ", TEXT], "aspects[0]: empty text"),
        ([TEXT], "labels aspects of a text, and predict without --aspect takes whole texts"),
        (["--aspect", "food", TEXT, "a second text"], "--aspect needs exactly one text as an argument (got 2)"),
        (["--aspect", "food", "--output", "no/such/folder/out.jsonl", TEXT], "no folder no/such/folder"),
        (["--aspect", "food", "--ray-workers", "2", TEXT], "--ray-workers is for --ray"),
    ]:
        result = cli("predict", "--model", export, *args)
        assert result.returncode != 0 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr


# (aspect, text, in the text?): the rule's edges (config/text.py aspect_in_text; docs/aspects.md "Rules")
IN_TEXT = [
    ("art", "The party was fun", False), ("art", "party art", True), ("Art", "ART was fun", True),
    ("bar", "the foobar", False), ("e", "the", False), ("ex", "an \u00e9x", False),  # é is a word character
    ("pizza", "the pizzas were cold", True), ("pizza", "the pizza's crust", True), ("pizza's", "pizzas", False),
    ("C++", "I like C++ and wi-fi", True), ("wi-fi", "I like C++ and wi-fi", True), ("fi", "no wi-fi", True),
    ("stra\u00dfe", "die STRASSE", True), ("ss", "STRASSE", False),  # casefolded: ß is ss
    ("\u670d\u52a1", "\u4ed6\u4eec\u7684\u670d\u52a1\u5f88\u597d", True),  # Chinese runs words together
    ("\uc11c\ube44\uc2a4", "\uc11c\ube44\uc2a4\uac00 \uc88b\ub2e4", True),  # Korean: a particle follows
    ("d al", "and although", True),  # several words: anywhere (MAMS test's offsets cut words so)
]


@pytest.mark.parametrize("aspect,text,expected", IN_TEXT)
def test_an_aspect_term_starts_a_word_of_its_text(aspect, text, expected):
    from qlora_sentiment.config.text import aspect_in_text

    assert aspect_in_text(aspect, text) is expected


def test_prepare_reads_repeated_targets_and_drops_an_aspect_inside_a_word(tmp_path):
    """The $T$ files users have mark every occurrence of the target; an aspect that only occurs inside another word
    ("art" in "party", as a $T$ inside a word writes it) is dropped and counted, never trained on."""
    from helpers import data_config
    from qlora_sentiment.data.prepare import prepare

    blocks = {"train": [(f"at table {i} the $T$ was good and the $T$ was cheap .", "wine", "1") for i in range(20)]
              + [(f"at table {i} the $T$ was slow .", "service", "-1") for i in range(20)]
              + [("The p$T$y was fun", "art", "0"), ("at table 99 it was $T$ .", "ok", "0")],
              "test": [(f"at desk {i} the $T$ was $T$ .", "wine", str(i % 3 - 1)) for i in range(6)]}
    for split, rows in blocks.items():
        (tmp_path / f"{split}.seg").write_text("".join(f"{s}\n{a}\n{p}\n" for s, a, p in rows))
    cfg = data_config(task="aspect_term", source="local", name=str(tmp_path), group_column=None,
                      splits={"train": "train.seg", "test": "test.seg"}, labels=["negative", "neutral", "positive"])
    records, report = prepare(cfg, seed=0)
    assert report["changed"]["target_repeated"] == 26 and "target_repeated" not in report["dropped"]
    assert report["dropped"]["aspect_not_in_text"] == 1
    kept = [r for part in records.values() for r in part]
    assert len(kept) == 47 and not any(r["aspect"] == "art" for r in kept)
    assert "at table 3 the wine was good and the wine was cheap ." in {r["text"] for r in kept}


def test_art_is_not_in_the_party_on_every_path(trained_aspects):
    """One rule (api/analyzer.py aspect_admitted) for a single call and for the web API's pairs (predict_pairs):
    the same one line, naming the aspect by its index."""
    from qlora_sentiment import SentimentAnalyzer
    from qlora_sentiment.api.analyzer import aspect_admitted
    from qlora_sentiment.core.errors import DataError

    analyzer = SentimentAnalyzer.from_pretrained(trained_aspects.root / "export")
    refused = "aspects[0]: 'art' does not occur in the text; this model (aspect_term) labels terms of the text"
    with pytest.raises(DataError, match=rf"^{re.escape(refused)}"):
        analyzer.predict("The party was fun", aspects=["art"])
    with pytest.raises(DataError, match=rf"^{re.escape(refused.replace('[0]', '[1]'))}"):
        analyzer.predict_pairs([TEXT, "The party was fun"], ["food", "art"])
    pairs = analyzer.predict_pairs([TEXT, "Modern art"], ["FOOD", "art"])  # case is ignored
    singles = analyzer.predict(TEXT, aspects=["FOOD"]) + analyzer.predict("Modern art", aspects=["art"])
    assert [p["label"] for p in pairs] == [p["label"] for p in singles]
    category = trained_aspects.record.model_copy(update={"task": "aspect_category"})
    assert aspect_admitted(category, "the party was fun", "art") and \
        not aspect_admitted(trained_aspects.record, "the party was fun", "art")


def test_sentence_models_take_no_aspects():
    from qlora_sentiment.core.errors import DataError
    from qlora_sentiment.api.validation import check_aspects

    with pytest.raises(DataError, match="this model labels whole texts"):
        check_aspects(["food"], "sentence")
    with pytest.raises(DataError, match="name at least one"):
        check_aspects([], "aspect_term")
    with pytest.raises(DataError, match="name at least one"):
        check_aspects((a for a in ()), "aspect_term")
    assert check_aspects((a for a in ["food", "service"]), "aspect_term") == ["food", "service"]
    with pytest.raises(DataError, match="aspects: a list of strings"):
        check_aspects(3, "aspect_term")


@pytest.mark.slow
def test_mams_preset_end_to_end(tmp_path, tiny_llama, python_bin_env):
    """`data=mams_atsa` through the project's real conf/ (the data in data/raw/mams-atsa/, as a user puts it),
    every stage of dvc.yaml (helpers.repro_in_process: what `dvc exp run -S data=mams_atsa` runs), the aspect
    error analysis, and predict --aspect on the exported model."""
    env = python_bin_env
    repo = make_project(tmp_path / "project", tiny_llama, env)
    shutil.rmtree(repo / "conf")
    shutil.copytree(ROOT / "conf", repo / "conf")
    for name, count, seed in (("train", 100, 0), ("val", 16, 1), ("test", 24, 2)):
        easy_aspects_xml(repo / "data/raw/mams-atsa" / f"{name}.xml", count, seed)
    tiny = ["model.source=local", f"model.name={TINY_MODEL}", "runtime.torch_threads=1", "lora.last_n_layers=1",
            "train.max_steps=4", "train.warmup_steps=0", "train.max_length=96", "train.save_steps=4",
            "train.logging_steps=1", "train.validation_points=0", "eval.batch_size=16"]
    repro_in_process(repo, ["data=mams_atsa", *tiny])
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    assert metrics["n"] == 48 and list(metrics["per_class"]) == ["negative", "neutral", "positive"]
    report = json.loads((repo / "data/prepared/report.json").read_text())
    assert report["test"]["aspects"]["mixed_sentences"] == 24 and report["train"]["aspects"]["sentences"] == 100
    errors = json.loads((repo / "metrics/error_analysis.json").read_text())["aspects"]
    assert errors["sentences"]["aspects disagree"]["n"] == 48
    assert sum(r["n"] for r in errors["aspect_frequency"].values()) == 48
    first = json.loads((repo / "metrics/predictions.jsonl").read_text().splitlines()[0])
    assert {"aspect", "group", "aspect_train_count"} <= set(first)
    assert "Error rates by aspect" in (repo / "metrics/evaluation.md").read_text()
    out = run(["qlora-sentiment", "predict", "--model", "models/export", "--aspect", "service", TEXT], repo, env)
    assert json.loads(out.stdout)["aspect"] == "service"


def test_hub_dataset_with_an_aspect_column(tmp_path):
    """A hub-style dataset (save_to_disk) with text/aspect/label columns, aspect categories (not spelled in the
    text), conflict rows dropped and counted, validation carved by sentence."""
    import datasets

    from helpers import data_config
    from qlora_sentiment.data.prepare import prepare

    rows = [(f"visit {i}: lovely pasta, slow waiter", aspect, label) for i in range(30)
            for aspect, label in (("FOOD#QUALITY", "positive"), ("SERVICE#GENERAL", "negative"),
                                  ("AMBIENCE#GENERAL", "conflict" if i % 10 == 0 else "neutral"))]
    text, aspect, label = zip(*rows)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": text, "aspect": aspect, "label": label})}) \
        .save_to_disk(str(tmp_path / "ds"))
    cfg = data_config(task="aspect_category", source="hub", name=str(tmp_path / "ds"), splits={"train": "train"},
                      labels=["negative", "neutral", "positive"])
    records, report = prepare(cfg, seed=0)
    assert report["dropped"]["conflict"] == 3 and report["dropped"]["aspect_not_in_text"] == 0
    assert sum(len(r) for r in records.values()) == 87
    groups = {name: {r["group"] for r in part} for name, part in records.items()}
    assert not groups["train"] & groups["validation"] and not groups["train"] & groups["test"]
    assert report["test"]["aspects"]["aspects_per_sentence"].get("3", 0) >= 1
