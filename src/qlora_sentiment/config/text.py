"""The text cleaning `data.clean` describes (html, unicode, format_chars; whitespace always collapsed), applied by
prepare to the training data and by every scoring entry point to the texts it is given, so that a model sees its
texts as it was trained on them. The export carries the same steps as a tokenizer normalizer (model/tokenizer.py),
built from the patterns below. It lives in config/ because config/ is the one package every stage depends on.
"""

from __future__ import annotations

import functools
import html
import itertools
import re
import unicodedata

import regex

# Tags only: "a < b > c" stays. A tag becomes a space (IMDB's "<br /><br />" separates sentences).
TAG_PATTERN = r"</?[A-Za-z][^<>]{0,200}>"


def _ranges(codes: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for code in codes:
        if out and out[-1][1] == code - 1:
            out[-1][1] = code
        else:
            out.append([code, code])
    return [(a, b) for a, b in out]


# The invisible characters (docs/data.md "Invisible characters"): drawn as nothing, yet a model reads each as a
# token, so one appended can flip a label. Three groups, all removed when data.clean.format_chars is remove:
# - Default_Ignorable_Code_Point, from the Unicode data the `regex` package ships: zero-width space/joiners, BOM,
#   bidi marks, soft hyphen, the combining grapheme joiner U+034F, the Hangul fillers U+115F U+1160 U+3164 U+FFA0,
#   variation selectors (U+FE0F of emoji, U+E0100...), tag characters, the unassigned rest of plane 14;
# - category Cf (format characters) not in the first group (the Arabic number signs U+0600-U+0605, the
#   interlinear annotation marks U+FFF9-U+FFFB, ...), as removed before this policy;
# - category Cc (controls: NUL, BEL, ESC, DEL, C1) that are not whitespace (tab, newline... collapse to one space).
# The set is this machine's Python and `regex` Unicode data (both pinned by the lock); the export writes it out as
# explicit ranges. Planes 0, 1 and 14 hold every such character and every whitespace character (2-13 are
# ideographs or unassigned, 15-16 private use): scanning only them keeps the first use fast.


def _scanned() -> itertools.chain:
    return itertools.chain(range(0x20000), range(0xE0000, 0xF0000))


_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")


def is_invisible(char: str) -> bool:
    """One code point of the policy above (whitespace is not: it separates words, and is collapsed instead)."""
    category = unicodedata.category(char)
    return not char.isspace() and (category in ("Cf", "Cc") or _IGNORABLE.match(char) is not None)


@functools.cache
def invisible_ranges() -> list[tuple[int, int]]:
    return _ranges([c for c in _scanned() if not 0xD800 <= c <= 0xDFFF and is_invisible(chr(c))])


@functools.cache
def space_ranges() -> list[tuple[int, int]]:
    """What Python's `\\s` matches (str.isspace), spelt out so the export's normalizer collapses exactly the same."""
    return _ranges([c for c in _scanned() if chr(c).isspace()])


def char_class(ranges: list[tuple[int, int]], escape) -> str:
    """A regex character class; `escape(code)` spells one code point in the target regex dialect."""
    return "[" + "".join(escape(a) if a == b else f"{escape(a)}-{escape(b)}" for a, b in ranges) + "]"


def _python_escape(code: int) -> str:
    return f"\\U{code:08X}"


@functools.cache
def _patterns():
    return (re.compile(TAG_PATTERN), re.compile(char_class(invisible_ranges(), _python_escape)),
            re.compile(char_class(space_ranges(), _python_escape) + "+"))


def clean_text(text: str, cleaning) -> str:
    """`cleaning`: a TextCleaning (or data.clean). The order is the export normalizer's: tags, entities, format
    characters (after the entities, which can spell them: &#8203;), Unicode normal form, whitespace."""
    tag, fmt, space = _patterns()
    if cleaning.html:
        text = html.unescape(tag.sub(" ", text))
    if cleaning.format_chars == "remove":  # the invisible characters above
        # before the normal form: "e" + U+200B + U+0301 then composes to "é", as without the U+200B
        text = fmt.sub("", text)
    if cleaning.unicode != "none":
        text = unicodedata.normalize(cleaning.unicode, text)
    return space.sub(" ", text).strip()


# A word character (\w, Unicode: letters, marks, digits, _) of a script written with spaces between words. Han, kana,
# Thai, Lao, Khmer and Myanmar (line-break classes ID, CJ, SA) run words together: no word starts visibly there.
_SPACED_WORD_CHAR = regex.compile(r"[\w--\p{Line_Break=Ideographic}--\p{Line_Break=Conditional_Japanese_Starter}"
                                  r"--\p{Line_Break=Complex_Context}]", regex.V1)


def aspect_in_text(aspect: str, text: str) -> bool:
    """Whether an aspect term occurs in its (cleaned) text: training keeps only such rows of an aspect_term task, and
    its models refuse other aspects (docs/aspects.md "The aspect-term rule").

    Both are casefolded; an occurrence counts unless it starts inside a word, i.e. unless the aspect's first character
    and the text's character before it are both word characters (\\w) of a script written with spaces. "art" is not in
    "The party was fun"; "pizza" is in "the pizzas were cold" and "pizza's crust" (a word may go on: plurals,
    possessives, Korean or Turkish endings); "C++" and "wi-fi" are in "C++ and wi-fi"; "服务" is in "他们的服务很好".
    An aspect of several words (a space inside) counts wherever it occurs: annotators' offsets cut words (MAMS test
    has "d al" inside "and although"), and a phrase found inside other words by chance is rare."""
    aspect, text = aspect.casefold(), text.casefold()
    if any(char.isspace() for char in aspect) or not aspect or not _SPACED_WORD_CHAR.match(aspect[0]):
        return aspect in text
    start = text.find(aspect)
    while start != -1:
        if start == 0 or not _SPACED_WORD_CHAR.match(text[start - 1]):
            return True
        start = text.find(aspect, start + 1)
    return False
