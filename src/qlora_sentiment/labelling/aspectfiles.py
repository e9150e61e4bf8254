"""Aspect files: `predict --file FILE --aspect-column COL` (one aspect a row) or `--aspect-list-column COL` (a row's
aspects as a list: a JSON array in JSON Lines, and in CSV/TSV a JSON array in the cell, `["food", "service"]`) on an
aspect model. One output row per (text, aspect) pair, in order, carrying its input row (0-based data row, as
--ray's `row`).

The pairs are what TextFile's two passes count, check and read again, so the progress record, --resume, the lock,
the chunks and the input-changed check are the sentence task's own, counted in pairs. The first pass checks every
row before the model loads: the columns are there, every row has an aspect (a file with none is a sentence file,
one with some rows without is mixed: both refused), a list column holds lists of strings, and each pair passes
api.analyzer.aspect_inputs (the rule single calls and the web API apply: an aspect_term model's aspect occurs in
its text), each error one line naming the file, line and column."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from qlora_sentiment.api.validation import MAX_TEXT_CHARS, describe
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.aspect_files import bad_input
from qlora_sentiment.problems.predict import bad_input as predict_problem
from qlora_sentiment.labelling.textfiles import MISSING, TextFile, rows_of


class Pair(NamedTuple):
    row: int  # the input's data row, 0-based
    text: str
    aspect: str


@dataclass
class AspectFile(TextFile):
    """A checked aspect file: `rows` counts its pairs, `texts()` yields Pair items."""

    aspect_column: str = "aspect"
    listed: bool = False  # --aspect-list-column: each cell a list of aspects
    record: object = None  # the model's ModelRecord: its task and cleaning decide what passes

    @classmethod
    def open_pairs(cls, path: str | Path, column: str, aspect_column: str, listed: bool, record,
                   max_chars: int = MAX_TEXT_CHARS) -> "AspectFile":
        if Path(path).suffix.lower() == ".txt":
            raise DataError(bad_input("aspect-column-on-txt").format(name=path))
        return cls.open(path, column, max_chars, aspect_column=aspect_column, listed=listed, record=record)

    @property
    def flag(self) -> str:
        return "--aspect-list-column" if self.listed else "--aspect-column"

    def items(self, raw_lines: Iterable[bytes]) -> Iterator[Pair]:
        with_aspect = without = None  # the first line of each kind: both seen is a mixed file
        rows = rows_of(raw_lines, self.name, self.kind, self.column, self.max_chars, (self.aspect_column, self.flag),
                       self.stream)
        for index, (line, text, value) in enumerate(rows):
            aspects = self._aspects(line, value)
            if aspects:
                with_aspect = with_aspect or line
            else:
                without = without or line
            if with_aspect and without:
                raise DataError(bad_input("aspect-rows-mixed").format(
                    name=self.name, line=without, column=self.aspect_column, other=with_aspect))
            if aspects:
                self._check(line, text, aspects)
                yield from (Pair(index, text, aspect) for aspect in aspects)
        if without:
            raise DataError(bad_input("aspect-column-empty").format(name=self.name, line=without,
                                                                    column=self.aspect_column))

    def _aspects(self, line: int, value) -> list[str]:
        """The row's aspects, stripped ([]: none); a cell of the wrong kind is one DataError."""
        if value is MISSING or value is None:
            return []
        if self.listed and isinstance(value, str) and self.kind in (".csv", ".tsv"):
            if not value.strip():
                return []
            try:
                value = json.loads(value)
            except ValueError:
                self._not_a_list(line, f"{value[:40]!r} (not JSON)")
        if self.listed:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                what = "a string" if isinstance(value, str) else (
                    "a list holding " + describe(next(i for i in value if not isinstance(i, str)))
                    if isinstance(value, list) else describe(value))
                self._not_a_list(line, what)
            return [item.strip() for item in value]  # a blank item: aspect_inputs names it
        if not isinstance(value, str):
            raise DataError(predict_problem("predict-nan-text").format(name=self.name, line=line,
                                                                       column=self.aspect_column,
                                                                       what=describe(value)))
        return [value.strip()] if value.strip() else []

    def _not_a_list(self, line: int, what: str):
        raise DataError(bad_input("aspect-list-not-a-list").format(name=self.name, line=line,
                                                                   column=self.aspect_column, what=what))

    def _check(self, line: int, text: str, aspects: list[str]) -> None:
        """The pair rules of single calls and the web API (api.analyzer.aspect_inputs), located in the file."""
        from qlora_sentiment.api.analyzer import aspect_inputs

        try:
            aspect_inputs(self.record, text, aspects)
        except DataError as exc:
            problem = str(exc) if self.listed else str(exc).removeprefix("aspects[0]: ")
            raise DataError(bad_input("aspect-file-not-in-text").format(
                name=self.name, line=line, column=self.aspect_column, problem=problem)) from None


def aspect_record(model):
    """The record of an aspect model, read without loading it, for checking an aspect file's pairs; a sentence
    model is refused (it labels whole texts)."""
    from qlora_sentiment.cli_inputs import check_model_folder
    from qlora_sentiment.model.record import read_record

    check_model_folder(model)
    record = read_record(model)
    if record.task == "sentence":
        raise DataError(predict_problem("aspects-on-sentence-model").format())
    return record


def label_chunk(analyzer, part: list, batch_size: int) -> list[dict]:
    """One chunk's output rows: texts through `predict`, or an aspect file's pairs through `predict_pairs` (the
    chunk's pairs share forward passes, whichever texts they come from, as the web API's requests do)."""
    if part and isinstance(part[0], Pair):
        predictions = analyzer.predict_pairs([p.text for p in part], [p.aspect for p in part], batch_size=batch_size)
        return [{"row": p.row, "text": p.text, "aspect": p.aspect, **q} for p, q in zip(part, predictions)]
    return [{"text": text, **p} for text, p in zip(part, analyzer.predict(part, batch_size=batch_size))]
