"""Saving tokenizers so the saved folder depends on the tokenizer alone; the export's text cleaning as the
tokenizer's normalizer (config/text.py's steps), so `pipeline("text-classification")` cleans raw text too."""

from __future__ import annotations

import json
from pathlib import Path

from qlora_sentiment.core.io import write_text


def save_tokenizer(tokenizer, out, generic: bool = False) -> None:
    """save_pretrained without the loading flags it would record (HF_HUB_OFFLINE turns into local_files_only:
    true), so the saved folder depends on the tokenizer only, not on the environment it was loaded in.

    generic: recorded as a PreTrainedTokenizerFast, which loads tokenizer.json whole. A model's own class
    (GemmaTokenizer, LlamaTokenizer in transformers 5) rebuilds its normalizer in code and would drop the export's
    cleaning and the prompt wrapper's Prepend."""
    for key in ("local_files_only", "token", "cache_dir", "_commit_hash"):
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.save_pretrained(out)
    if generic:
        config = Path(out) / "tokenizer_config.json"
        values = json.loads(config.read_text(encoding="utf-8"))
        values["tokenizer_class"] = "PreTrainedTokenizerFast"
        write_text(config, json.dumps(values, indent=2, ensure_ascii=False) + "\n")


# No such module is shipped: with trust_remote_code=True, AutoTokenizer stops on the missing file (named so), rather
# than loading a tokenizer that gives other ids.
WHOLE_FILE_REF = "load_without_trust_remote_code.PreTrainedTokenizerFast"


def read_whole_file(out) -> None:
    """Make `AutoTokenizer` read the saved tokenizer.json whole for the model types whose class transformers 5
    forces (`qwen2`, `phi3`, ...: its MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS), which rebuild their normalizer and
    pre-tokenizer in code and so lose the export's cleaning and leading space: every review then gets other ids.

    AutoTokenizer skips that forcing when tokenizer_config.json has an `auto_map`, then drops the auto_map for these
    model types unless trust_remote_code=True, and loads the `tokenizer_class` named (PreTrainedTokenizerFast)."""
    config = Path(out) / "tokenizer_config.json"
    values = json.loads(config.read_text(encoding="utf-8"))
    values["auto_map"] = {"AutoTokenizer": [None, WHOLE_FILE_REF]}
    write_text(config, json.dumps(values, indent=2, ensure_ascii=False) + "\n")


# html.unescape's commonest entities, in an order that decodes each once ("&amp;lt;" gives "&lt;", as
# html.unescape does): &amp; last. Other entities (numeric ones, rarer names, "&amp" without ";") stay as they are.
ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#34;", '"'), ("&apos;", "'"), ("&#39;", "'"),
            ("&#039;", "'"), ("&#x27;", "'"), ("&nbsp;", "\u00a0"), ("&#160;", "\u00a0"), ("&amp;", "&"))


def cleaning_normalizer(cleaning):
    """config/text.py's clean_text as one tokenizers normalizer, step for step (entities: ENTITIES only)."""
    from tokenizers import Regex, normalizers

    from qlora_sentiment.config import text

    def onig(code: int) -> str:
        return f"\\x{{{code:X}}}"

    steps = []
    if cleaning.html:
        steps += [normalizers.Replace(Regex(text.TAG_PATTERN), " ")]
        steps += [normalizers.Replace(entity, char) for entity, char in ENTITIES]
    if cleaning.format_chars == "remove":
        steps += [normalizers.Replace(Regex(text.char_class(text.invisible_ranges(), onig)), "")]
    if cleaning.unicode != "none":
        steps += [getattr(normalizers, cleaning.unicode)()]
    steps += [normalizers.Replace(Regex(text.char_class(text.space_ranges(), onig) + "+"), " "),
              normalizers.Strip()]
    return normalizers.Sequence(steps)


def add_cleaning(tokenizer, cleaning) -> None:
    """The cleaning first, then the tokenizer's own normalizer (Gemma's " " -> "▁", a wrapper's Prepend).

    Added tokens are split off before any normalizer runs, so the cleaning never saw Gemma 3's "\\n", "\\t\\t" or
    "<b>" tokens: those the cleaning changes (a cleaned text never holds them) stop being added tokens, and the
    normalizer gets the whole text. Special tokens stay (pad, BOS, EOS are read from them)."""
    from tokenizers import Tokenizer, normalizers

    ours = cleaning_normalizer(cleaning)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"]
                            if t["special"] or ours.normalize_str(t["content"]) == t["content"]]
    backend = Tokenizer.from_str(json.dumps(spec))
    own = [backend.normalizer] if backend.normalizer is not None else []
    backend.normalizer = normalizers.Sequence([ours, *own])
    tokenizer._tokenizer = backend  # transformers keeps no other copy: backend_tokenizer is this attribute


def remove_cleaning(tokenizer, cleaning) -> bool:
    """Undo add_cleaning (the Python API cleans in Python, exactly, entities and all); False if it is not there.
    tokenizers flattens nested Sequences: the cleaning is the first len(cleaning_normalizer) steps."""
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    ours, steps = cleaning_normalizer(cleaning), backend.normalizer
    if not isinstance(steps, normalizers.Sequence) or len(steps) < len(ours):
        return False
    if any(steps[i].__getstate__() != ours[i].__getstate__() for i in range(len(ours))):
        return False
    own = [steps[i] for i in range(len(ours), len(steps))]
    backend.normalizer = normalizers.Sequence(own) if own else None
    return True
