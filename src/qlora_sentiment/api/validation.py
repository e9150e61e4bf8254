"""What a text to label must be, in one place: the Python API, the CLI and the web API (whose OpenAPI schema states
the same rule as a pattern) accept and refuse exactly the same texts.

A text is a Unicode string (no lone surrogates: they cannot be encoded, and a batch containing one would fail),
of at most `max_chars` characters, with at least one visible character: whitespace and the cleaning's invisible
characters (config/text.py: control characters such as NUL, format characters such as U+200B, BOM, bidi marks, the
Hangul fillers, variation selectors, …) alone are an empty text.
"""

from __future__ import annotations

import json
import math
import re

# the cleaning's invisible characters (one policy: config/text.py) and the class builder it spells them with
from qlora_sentiment.config.text import char_class, invisible_ranges, space_ranges
from qlora_sentiment.problems.catalogue import bad_input

MAX_TEXT_CHARS = 20_000  # far beyond max_length tokens; longer is a mistake (a whole file as one text)
MAX_ASPECT_CHARS = 200  # an aspect is a term or category ("battery life", "FOOD#QUALITY"), never a passage
MAX_ASPECTS = 64  # aspects of one text


def _blank_ranges() -> list[tuple[int, int]]:
    """What draws nothing: whitespace and the cleaning's invisible characters (what the cleaning removes or
    collapses, so a text of only these cleans to nothing)."""
    return sorted(space_ranges() + invisible_ranges())


# One visible character. The OpenAPI schema's `pattern` (ECMA-262 and Python read it alike: BMP escapes only) is the
# negation of the blank ranges' BMP part; Python checks the astral ones too (tags, variation selectors supplement,
# a few musical and shorthand format controls), which a pattern without ECMA's `u` flag cannot spell.
VISIBLE_PATTERN = "[^" + char_class([r for r in _blank_ranges() if r[0] <= 0xFFFF],
                                    lambda code: f"\\u{min(code, 0xFFFF):04X}")[1:]
_VISIBLE = re.compile("[^" + char_class(_blank_ranges(), lambda code: f"\\U{code:08X}")[1:])
_SURROGATE = re.compile("[\ud800-\udfff]")


class NonFinite(float):
    """NaN / Infinity / -Infinity in a JSON document (`json.loads(..., parse_constant=NonFinite.parse)`): not valid
    JSON, kept as a marker so that the error can name the field that held it."""

    name: str

    @classmethod
    def parse(cls, name: str) -> "NonFinite":
        value = cls(name.replace("Infinity", "inf"))
        value.name = name
        return value


def quote(name: str) -> str:
    """A client-supplied name, short and escaped (ASCII, no lone surrogate): safe to print in any JSON."""
    text = json.dumps(name, ensure_ascii=True)[1:-1]
    return text if len(text) <= 40 else text[:39] + "…"


class DuplicateKey(Exception):
    """A JSON object that gives a key twice (the web API and predict's JSON Lines both refuse it): `field` is the
    key quoted, str() the message."""

    def __init__(self, key: str):
        self.field = quote(key)
        super().__init__(bad_input("serve-duplicate-key").format(field=self.field))


def no_duplicate_keys(pairs: list) -> dict:
    """json's object_pairs_hook: the object, or DuplicateKey naming the first key given twice."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def describe(value) -> str:
    if isinstance(value, NonFinite):
        return f"{value.name} (not valid JSON)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    names = {int: "a number", float: "a number", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def text_problem(text, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Why `text` cannot be labelled (one phrase), or None."""
    if not isinstance(text, str):
        return f"expected a string, got {describe(text)}"
    if len(text) > max_chars:
        return f"{len(text):,} characters; at most {max_chars:,} per text"
    surrogate = _SURROGATE.search(text)
    if surrogate:
        return (f"not valid Unicode: a lone surrogate U+{ord(surrogate.group()):04X} at character "
                f"{surrogate.start() + 1}")
    if not _VISIBLE.search(text):
        return "empty text" if not text.strip() else "empty text (only invisible or control characters)"
    return None


def check_aspects(aspects, task: str, max_items: int = MAX_ASPECTS) -> list[str]:
    """The aspects of one text as a list, or one DataError naming the first bad item (`aspects[1]: empty text`).
    A sentence model takes none; an aspect model at least one."""
    from qlora_sentiment.core.errors import DataError

    if task == "sentence":
        raise DataError(bad_input("aspects-on-sentence-model").format())
    try:  # listed once: a generator can be read only once
        aspects = [] if aspects is None else [aspects] if isinstance(aspects, str) else list(aspects)
    except TypeError:
        raise DataError(f"aspects: a list of strings, not {type(aspects).__name__}") from None
    if not aspects:
        raise DataError(f"aspects: this model labels aspects (data.task: {task}); name at least one "
                        "(--aspect food, aspects=['food'])")
    if len(aspects) > max_items:
        raise DataError(f"aspects: {len(aspects)} aspects; at most {max_items} per text")
    for i, aspect in enumerate(aspects):
        problem = text_problem(aspect, MAX_ASPECT_CHARS)
        if problem:
            raise DataError(f"aspects[{i}]: {problem}")
    return aspects


def check_texts(texts, max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    """The texts as a list, or one DataError naming the first bad item (`texts[3]: empty text`)."""
    from qlora_sentiment.core.errors import DataError

    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        problem = text_problem(text, max_chars)
        if problem:
            raise DataError(f"texts[{i}]: {problem}")
    return texts
