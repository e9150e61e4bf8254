"""One text pipeline: a text is cleaned as prepare cleaned the training texts (data.clean, recorded in the model)
by every entry point: the Python API on an adapter or an export, `pipeline("text-classification")` on the export
(its tokenizer's normalizer), the predict CLI and the web API. Invisible characters or markup around a review
change nothing: the same label and the same probabilities as the clean text."""

import json
import shutil

import pytest

from helpers import cli

CLEAN = ["awful film", "a brilliant, fun movie", "not good at all"]


def variants(text: str) -> list[str]:
    """Spellings of `text` that the cleaning turns back into `text`."""
    first, _, rest = text.partition(" ")
    return [
        "\ufeff" + text,                                   # BOM
        text + "\u200b",                                   # zero-width space
        f"\u200e{first} \u2066{rest}\u2069\u200f",         # LRM/RLM, bidi isolate
        text.replace(" ", "\u00a0"),                       # no-break spaces
        f"{first}\u00ad \u200c{rest}\u2060",               # soft hyphen, ZWNJ, word joiner
        f"<p>{first} <b>{rest}</b><br /></p>",             # HTML tags
        f"  {first}&nbsp;{rest}\n\t",                      # an entity, edge whitespace
        text + " \u3164",                                 # a Hangul filler appended (flipped labels before)
        text.replace(" ", " \U000e0100") + "\x00\x07",     # a variation selector after each space, NUL, BEL
        f"{first}\u034f \ufe0f{rest}\uffa0\x1b\x7f",        # grapheme joiner, VS16, halfwidth filler, ESC, DEL
    ]


GROUP = 1 + len(variants(CLEAN[0]))  # a clean text and its variants
ALL = [t for text in CLEAN for t in (text, *variants(text))]


def assert_same_as_clean(rows: list[dict]) -> None:
    """rows: {label, probabilities} for ALL, in order: each variant gives its clean text's prediction."""
    assert len(rows) == len(ALL)
    for start in range(0, len(ALL), GROUP):
        clean, *others = rows[start:start + GROUP]
        for text, row in zip(ALL[start + 1:start + GROUP], others):
            assert row["label"] == clean["label"], text
            for label, p in clean["probabilities"].items():
                assert abs(row["probabilities"][label] - p) <= 1e-6, (text, label, row["probabilities"][label], p)


def test_clean_text_removes_format_characters():
    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.config.text import clean_text

    on = TextCleaning(html=True, unicode="NFKC", format_chars="remove")
    for char in "\ufeff\u200b\u200c\u200d\u2060\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069" \
                "\u00ad\U000e0001":
        assert clean_text(f"{char}good{char} film{char}", on) == "good film", f"U+{ord(char):04X}"
    assert clean_text("e\u200b\u0301", on) == "\u00e9"  # removed before NFKC: the accent composes
    assert clean_text("\U0001f468\u200d\U0001f469", on) == "\U0001f468\U0001f469"  # the ZWJ of emoji goes too
    assert clean_text("&#8203;a&lt;b&gt; <i>c</i>\u00a0d", on) == "a<b> c d"  # entities, then format characters
    assert clean_text("a < b > c", on) == "a < b > c"
    keep = on.model_copy(update={"format_chars": "keep"})
    assert clean_text("\ufeffgood\u200b film", keep) == "\ufeffgood\u200b film"
    for text in ALL:
        assert clean_text(text, on) in CLEAN, repr(text)


def test_one_invisible_policy_for_the_cleaning_the_validator_and_the_export_normalizer():
    """Every code point of the policy (config/text.py): the Python cleaning removes it, the export's tokenizer
    normalizer removes it too, and a text of only such characters is empty to the validator."""
    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.config.text import clean_text, invisible_ranges, is_invisible
    from qlora_sentiment.model.tokenizer import cleaning_normalizer
    from qlora_sentiment.api.validation import text_problem

    on = TextCleaning(html=True, unicode="NFKC", format_chars="remove")
    normalizer = cleaning_normalizer(on)
    codes = [c for a, b in invisible_ranges() for c in range(a, b + 1)]
    assert {0x0000, 0x0007, 0x001B, 0x007F, 0x0085 - 1, 0x00AD, 0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0xFE0F,
            0x200B, 0xFEFF, 0xE0001, 0xE0100, 0xE0FFF, 0x0600} <= set(codes)
    assert not {0x0009, 0x000A, 0x0020, 0x00A0, 0x3000, 0x2800, 0x0041} & set(codes)  # whitespace, braille blank
    assert all(not is_invisible(chr(c)) for c in range(0x20000, 0xE0000, 97))  # planes 2-13 hold none
    for code in codes:
        char = chr(code)
        text = f"{char}good {char}film{char}"
        assert clean_text(text, on) == "good film", f"U+{code:04X}"
        assert normalizer.normalize_str(text) == "good film", f"U+{code:04X}"
        assert text_problem(char * 3) == "empty text (only invisible or control characters)", f"U+{code:04X}"


def test_the_record_round_trips_its_cleaning(trained, tmp_path):
    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.model.record import RECORD_FILE, read_record, write_record

    adapter, export = read_record(trained / "adapter"), read_record(trained / "export")
    assert adapter.clean == export.clean == TextCleaning(html=True, unicode="NFKC", format_chars="remove")
    changed = adapter.model_copy(update={"clean": TextCleaning(html=False, unicode="none", format_chars="keep")})
    write_record(tmp_path, changed)
    assert read_record(tmp_path) == changed and read_record(tmp_path).clean_texts(["<b>x</b>"]) == ["<b>x</b>"]
    old = json.loads((trained / "adapter" / RECORD_FILE).read_text())
    del old["clean"]  # a record written before the cleaning was recorded: texts are scored as given
    (tmp_path / RECORD_FILE).write_text(json.dumps(old))
    assert read_record(tmp_path).clean is None and read_record(tmp_path).clean_texts(["\ufeffx "]) == ["\ufeffx "]


@pytest.mark.parametrize("kind", ["adapter", "export"])
def test_python_api_scores_each_variant_as_its_clean_text(trained, kind):
    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    analyzer = SentimentAnalyzer.from_pretrained(trained / kind, base=trained / "base")
    assert_same_as_clean(analyzer.predict(ALL))


def test_transformers_pipeline_on_the_export_cleans_too(trained):
    from transformers import AutoTokenizer, pipeline

    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    folder = trained / "export"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for i, text in enumerate(ALL):  # the tokens themselves: the tokenizer's normalizer cleans
        assert tokenizer(text)["input_ids"] == tokenizer(CLEAN[i // GROUP])["input_ids"], repr(text)
    classify = pipeline("text-classification", model=str(folder), top_k=None)
    rows = [{"label": max(row, key=lambda d: d["score"])["label"],
             "probabilities": {d["label"]: d["score"] for d in row}} for row in classify(ALL)]
    assert_same_as_clean(rows)
    api = SentimentAnalyzer.from_pretrained(folder).predict(CLEAN)  # the project's cleaning in Python, exactly
    for got, want in zip(rows[::GROUP], api):
        assert got["label"] == want["label"]
        assert all(abs(got["probabilities"][k] - p) <= 1e-4 for k, p in want["probabilities"].items())


def test_predict_cli_scores_each_variant_as_its_clean_text(trained, tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ALL), encoding="utf-8")
    out = cli("predict", "--model", str(trained / "export"), "--threads", "1", "--file", str(path), "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert_same_as_clean(rows)


def test_web_api_scores_each_variant_as_its_clean_text(server):
    import httpx

    rows = []
    for start in range(0, len(ALL), 8):  # the test server takes 8 texts per request
        response = httpx.post(f"{server}/predict", json={"texts": ALL[start:start + 8]}, timeout=60)
        assert response.status_code == 200, response.text
        rows += response.json()["predictions"]
    assert_same_as_clean(rows)


def test_the_prompt_wrapper_keeps_the_prompt_and_cleans_only_the_review(tiny_llama, tmp_path):
    """The generative head's export: the cleaning runs on the review alone (the prompt's tokens come from the
    post-processor), and survives saving and loading the tokenizer."""
    from transformers import AutoTokenizer

    from qlora_sentiment.config.schema import TextCleaning
    from qlora_sentiment.config.text import clean_text
    from qlora_sentiment.model.classifier import wrap_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter
    from qlora_sentiment.model.tokenizer import add_cleaning, save_tokenizer

    cleaning = TextCleaning(html=True, unicode="NFKC", format_chars="remove")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    formatter = PromptFormatter(tokenizer, "Review: {text}\nSentiment:", ["negative", "positive"], 96)
    wrapped = wrap_tokenizer(tokenizer, formatter)
    add_cleaning(wrapped, cleaning)
    save_tokenizer(wrapped, tmp_path, generic=True)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in ALL + ["two\nlines <i>and</i> a <tag"]:
        expected = formatter.encode([clean_text(text, cleaning)])[0]
        assert loaded(text)["input_ids"] == expected, repr(text)


def test_an_export_whose_tokenizer_lost_the_cleaning_is_refused(trained, tmp_path):
    from qlora_sentiment.core.errors import ModelError
    from qlora_sentiment.model.export import load_export
    from qlora_sentiment.model.record import read_record

    folder = tmp_path / "export"
    shutil.copytree(trained / "export", folder)
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"] = None
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ModelError, match="does not start with the text cleaning"):
        load_export(folder, read_record(folder))
