"""Read aspect-based sentiment (ABSA) files: SemEval-2014 Task 4 XML (and MAMS, same format), SemEval-2015/2016 XML
(Opinions) and the three-line "$T$" format of ABSA-PyTorch's .seg/.raw files.

Each reader returns (frame, counts). The frame has one row per (sentence, aspect) with the columns row (the line in
the file of the aspect's element or block, from 1, so a report names a line a person finds), text (the sentence),
aspect, raw_label (the polarity as written) and group (one value per sentence, so a split keeps a sentence's aspects
together). counts says what gave no row: implicit (Opinion target="NULL"), no_aspects (sentences without an aspect
of the kind asked for) and repeated_in_sentence (an aspect given twice in one sentence, merged into the first one);
and target_repeated, what was read as written: $T$ blocks whose sentence marks its target more than once.
The rows keep no position of the aspect in its sentence (the XML's offsets are only checked).
"""

from __future__ import annotations

from pathlib import Path
from xml.parsers import expat

import pandas as pd

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.data import bad_input

COLUMNS = ["row", "text", "aspect", "raw_label", "group"]
KINDS = ("term", "category")
XML_SUFFIXES = (".xml",)
DOLLAR_T_SUFFIXES = (".seg", ".raw")  # not .txt: a data file of that name is read as a table
DOLLAR_T_LABELS = {"-1": "negative", "0": "neutral", "1": "positive"}
# kind -> element -> the attribute that names the aspect (2014/MAMS elements, then the 2015/2016 Opinion)
ASPECT_ATTRIBUTE = {
    "term": {"aspectTerm": "term", "Opinion": "target"},
    "category": {"aspectCategory": "category", "Opinion": "category"},
}


def _new_counts() -> dict[str, int]:
    return {"implicit": 0, "no_aspects": 0, "repeated_in_sentence": 0, "target_repeated": 0}


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype({"row": "int64"})


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found; fix the path (relative to the project folder)")


class _Sentences:
    """expat callbacks: collect one <sentence> at a time, turn it into rows when it closes."""

    def __init__(self, path: Path, kind: str, parser):
        self.path, self.kind, self.parser = path, kind, parser
        self.rows, self.counts = [], _new_counts()
        self.ordinal, self.sentence, self.text_parts = 0, None, None

    def fail(self, what: str, line: int | None = None):
        raise DataError(f"{self.path}: line {line or self.parser.CurrentLineNumber}: {what}")

    def start(self, name: str, attrs: dict) -> None:
        if name == "sentence":
            self.ordinal += 1
            # MAMS has no sentence ids; the file and ordinal still give every aspect of one sentence the same group
            # (and another file's sentence another one)
            group = attrs.get("id") or f"{self.path.name}:s{self.ordinal}"
            self.sentence = {"line": self.parser.CurrentLineNumber, "group": group, "text": None, "aspects": []}
        elif name == "text" and self.sentence is not None:
            self.text_parts = []
        elif name in ASPECT_ATTRIBUTE[self.kind]:
            self.aspect(name, attrs)

    def aspect(self, name: str, attrs: dict) -> None:
        if self.sentence is None:
            self.fail(f"<{name}> outside a <sentence>; move it into its sentence")
        key = ASPECT_ATTRIBUTE[self.kind][name]
        implicit = name == "Opinion" and attrs.get(key) == "NULL"
        # Offsets only matter for explicit terms; 2016 laptops has Opinions with no target at all (categories only).
        needed = [key, "polarity"] + (["from", "to"] if self.kind == "term" and not implicit else [])
        for attr in needed:
            if attr not in attrs:
                self.fail(f"{name} has no '{attr}' attribute; add it")
        if implicit:  # the aspect is not in the text: nothing to point the model at
            self.counts["implicit"] += 1
            return
        span = None
        if self.kind == "term":
            try:
                span = (int(attrs["from"]), int(attrs["to"]))
            except ValueError:
                self.fail(f"{name} from={attrs['from']!r} to={attrs['to']!r} are not whole numbers; fix the offsets")
        self.sentence["aspects"].append((self.parser.CurrentLineNumber, attrs[key], attrs["polarity"], span))

    def chars(self, data: str) -> None:
        if self.text_parts is not None:
            self.text_parts.append(data)

    def end(self, name: str) -> None:
        if name == "text" and self.text_parts is not None:
            self.sentence["text"], self.text_parts = "".join(self.text_parts), None
        elif name == "sentence" and self.sentence is not None:
            self.close(self.sentence)
            self.sentence = None

    def close(self, s: dict) -> None:
        text = s["text"]
        if text is None:
            self.fail("sentence has no <text>; add the sentence's text", s["line"])
        merged = {}  # (aspect, span) -> [line, aspect, label]: one row per aspect, the first element's line
        for line, aspect, label, span in s["aspects"]:
            if span is not None and (not 0 <= span[0] <= span[1] <= len(text) or text[span[0]:span[1]] != aspect):
                self.fail(bad_input("aspect-offsets").format(start=span[0], end=span[1], found=text[span[0]:span[1]],
                                                            term=aspect), line)
            if (aspect, span) in merged:
                # 2015/16 repeat a target once per category; the same aspect judged two ways is a conflict.
                self.counts["repeated_in_sentence"] += 1
                if merged[(aspect, span)][2] != label:
                    merged[(aspect, span)][2] = "conflict"
            else:
                merged[(aspect, span)] = [line, aspect, label]
        if not merged:
            self.counts["no_aspects"] += 1
        self.rows += [(line, text, aspect, label, s["group"]) for line, aspect, label in merged.values()]

    def refuse_entity(self, name, *_):
        # Entity declarations are how "billion laughs" and external-entity files work; real ABSA data has none.
        self.fail(f"the DOCTYPE declares entity '{name}'; remove the DOCTYPE's entity declarations")

    def refuse_external(self, context, base, system_id, public_id):
        self.fail(f"refusing to read external entity {system_id!r}; remove it")


def read_semeval_xml(path: Path, kind: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """SemEval-2014/MAMS (<aspectTerm>/<aspectCategory>) or SemEval-2015/2016 (<Opinion>) XML; kind: term|category."""
    if kind not in KINDS:
        raise DataError(f"aspect kind '{kind}' is unknown; use one of {', '.join(KINDS)}")
    path = Path(path)
    _require_file(path)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)  # never fetch an external DTD
    parser.buffer_text = True
    handler = _Sentences(path, kind, parser)
    parser.StartElementHandler, parser.EndElementHandler = handler.start, handler.end
    parser.CharacterDataHandler = handler.chars
    parser.EntityDeclHandler, parser.ExternalEntityRefHandler = handler.refuse_entity, handler.refuse_external
    try:
        with open(path, "rb") as handle:  # bytes: expat honours the file's encoding declaration
            parser.ParseFile(handle)
    except expat.ExpatError as exc:
        raise DataError(bad_input("aspect-xml-broken").format(path=path, line=exc.lineno,
                                                               reason=expat.ErrorString(exc.code))) from None
    return _frame(handler.rows), handler.counts


def _read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}: line {line}: not UTF-8 (byte {exc.start}); re-encode it as UTF-8 "
                        f"(iconv -f latin1 -t utf-8)") from None
    # split on \n only: str.splitlines also breaks on \x0b, \x1c or U+2028 inside a sentence and shifts the blocks.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():  # a trailing empty line is how most files end
        lines.pop()
    return lines


def read_dollar_t(path: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """Three lines per aspect: the sentence with the aspect as $T$ (every occurrence of it), the aspect, the polarity
    -1/0/1."""
    path = Path(path)
    _require_file(path)
    lines = _read_lines(path)
    if len(lines) % 3:
        start = len(lines) - len(lines) % 3 + 1
        raise DataError(bad_input("aspect-seg-lines").format(path=path, line=start, count=len(lines)))
    rows, counts = [], _new_counts()
    for first in range(0, len(lines), 3):
        sentence, aspect, polarity = (line.strip() for line in lines[first:first + 3])
        markers = sentence.count("$T$")
        if not markers:  # no aspect to restore: the block says nothing about which words it labels
            raise DataError(f"{path}: line {first + 1}: the sentence has 0 '$T$' markers; write $T$ in place of the "
                            "aspect")
        # ABSA-PyTorch's files mark every occurrence of the target ("the $T$ was good , the $T$ was cheap"): each is
        # the aspect, and the one label is about all of them. Were a position ever kept, it would be the first $T$'s.
        counts["target_repeated"] += markers > 1
        if not aspect:
            raise DataError(f"{path}: line {first + 2}: the aspect is empty; write the aspect that $T$ stands for")
        if polarity not in DOLLAR_T_LABELS:
            raise DataError(f"{path}: line {first + 3}: polarity {polarity!r} is not -1, 0 or 1; fix it")
        text = sentence.replace("$T$", aspect)
        # The file repeats a sentence once per aspect; the restored text is what ties its aspects together.
        rows.append((first + 1, text, aspect, DOLLAR_T_LABELS[polarity], text))
    return _frame(rows), counts


def read_aspect_file(path: Path, kind: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """One ABSA file, by its suffix (csv/jsonl aspect tables are read with the other tables, not here)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in XML_SUFFIXES:
        return read_semeval_xml(path, kind)
    if suffix in DOLLAR_T_SUFFIXES:
        if kind != "term":  # $T$ marks a span of the sentence: there are no category files in this format
            raise DataError(f"{path}: $T$ files hold aspect terms only; use aspect kind 'term', not '{kind}'")
        return read_dollar_t(path)
    raise DataError(f"{path}: unknown aspect file type '{suffix}'; use {', '.join(XML_SUFFIXES + DOLLAR_T_SUFFIXES)}")
