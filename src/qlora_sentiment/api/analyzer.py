"""The Python API: `SentimentAnalyzer.from_pretrained(folder).predict(texts)`.

`folder` is an adapter written by the train stage (its base is resolved from the recorded reference) or a merged
export written by the export stage (run by ONNX Runtime when it has its ONNX copy: `backend`). Predictions come
from the same LabelScorer that the evaluate stage uses, on texts cleaned as the training texts were (the CLI's
predict and serve come through here too).
"""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path

from qlora_sentiment.config.text import aspect_in_text
from qlora_sentiment.core.errors import DataError, ModelError
from qlora_sentiment.model.adapter import load_scorer
from qlora_sentiment.model.onnx import BACKENDS, OnnxClassifier
from qlora_sentiment.model.record import ModelRecord, read_record
from qlora_sentiment.model.scoring import LabelScorer
from qlora_sentiment.problems.catalogue import bad_input
from qlora_sentiment.api.validation import MAX_TEXT_CHARS, check_aspects, check_texts

log = logging.getLogger(__name__)


def too_long_cleaned(name: str, length: int, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A text whose cleaned form (NFKC, entities) is over `max_chars` (the web API's: --max-chars), as one line."""
    return bad_input("serve-text-cleaned-too-long").format(name=name, length=length, max_chars=max_chars)


def aspect_admitted(record: ModelRecord, clean_text: str, clean_aspect: str) -> bool:
    """The one rule for every path that labels an aspect (predict, predict_pairs, the web API, files): an
    aspect_term model's aspect must occur in the cleaned text (config/text.py aspect_in_text, the rule prepare keeps
    training rows by): it was trained on terms of their sentence and has nothing to read for another word; an
    aspect_category model takes any. Both arguments as `record.clean_texts` cleans them."""
    return record.task != "aspect_term" or aspect_in_text(clean_aspect, clean_text)


def not_in_text(index: int, aspect: str) -> DataError:
    return DataError(bad_input("aspect-not-in-text").format(index=index, aspect=aspect[:60]))


def aspect_inputs(record: ModelRecord, text, aspects) -> tuple[list[str], str, list[str]]:
    """One text and its aspects checked and cleaned as the training texts were: (aspects, text, aspects cleaned);
    each aspect passes `aspect_admitted` or the first that does not is a DataError naming it."""
    texts = check_texts(text)
    if len(texts) != 1:
        raise DataError(f"aspects: name the aspects of one text at a time (got {len(texts)} texts)")
    aspects = check_aspects(aspects, record.task)
    clean_text, *clean_aspects = record.clean_texts(texts + aspects)
    for i, aspect in enumerate(clean_aspects):
        if not aspect_admitted(record, clean_text, aspect):
            raise not_in_text(i, aspects[i])
    return aspects, clean_text, clean_aspects


class SentimentAnalyzer:
    def __init__(self, scorer: LabelScorer, record: ModelRecord, path: Path):
        self.scorer, self.record, self.path = scorer, record, path

    @classmethod
    def from_pretrained(cls, path: str | Path, base: str | Path | None = None, backend: str = "auto",
                        threads: int | None = None) -> "SentimentAnalyzer":
        """`base`: the base_model stage's folder (optional for adapters: the recorded base is used). `backend`
        (exports only): `onnx` (ONNX Runtime on the export's onnx/model.onnx: the fastest CPU path), `torch`, or
        `auto` (onnx when the export has it and no GPU is visible). `threads`: ONNX Runtime's CPU threads."""
        from qlora_sentiment.model.export import load_export

        path = Path(path)
        record = read_record(path)
        if record.clean is None:
            log.warning("%s: its record predates recorded text cleaning: texts are scored as given (rebuild it, "
                        "dvc repro, to clean them as its training texts were)", path)
        if backend not in BACKENDS:
            raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
        if not record.is_export and backend == "onnx":
            raise ModelError(bad_input("onnx-backend-on-adapter").format(path=path))
        scorer = load_export(path, record, backend, threads) if record.is_export else load_scorer(path, base)
        return cls(scorer, record, path)

    @property
    def backend(self) -> str:
        return "onnx" if isinstance(self.scorer.model, OnnxClassifier) else "torch"

    @property
    def labels(self) -> list[str]:
        return list(self.scorer.labels)

    @property
    def task(self) -> str:
        return self.record.task

    def predict(self, texts, batch_size: int = 16, aspects=None) -> list[dict]:
        """[{label, probabilities: {label: p}}] in input order; a single string gives a one-item list. Each text is
        cleaned as prepare cleaned the training texts (the record's `clean`: tags, format characters, ...).
        An aspect model labels one text's `aspects`: [{aspect, label, probabilities}], one per aspect, in order."""
        if aspects is not None or self.task != "sentence":
            return self._predict_aspects(texts, aspects, batch_size)
        texts = check_texts(texts)
        if not texts:
            return []
        proba = self.scorer.predict_proba(self.record.clean_texts(texts), batch_size=batch_size)
        return [self._row(p) for p in proba]

    def _row(self, p) -> dict:
        return {"label": self.labels[int(p.argmax())],
                "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}}

    def _predict_aspects(self, text, aspects, batch_size: int) -> list[dict]:
        aspects, clean_text, clean_aspects = aspect_inputs(self.record, text, aspects)
        self._aspect_ids(self.scorer.tokenizer, clean_aspects)  # too long for the model: one line, not a 500
        proba = self.scorer.predict_proba([clean_text] * len(aspects), batch_size=batch_size, aspects=clean_aspects)
        return [{"aspect": aspect, **self._row(p)} for aspect, p in zip(aspects, proba)]

    def predict_pairs(self, texts: list[str], aspects: list[str], batch_size: int = 16) -> list[dict]:
        """[{label, probabilities}] of (text, aspect) pairs, in order, the texts any number of different ones: what
        the web API's forward passes run (several requests' aspects at once). Check each text's aspects first
        (`aspect_token_lengths`, aspect_inputs); texts and aspects are cleaned as `predict` cleans them, and pair i
        is refused as aspects[i] when its aspect fails `aspect_admitted`, as `predict` refuses it."""
        unique = list(dict.fromkeys([*texts, *aspects]))  # a text with 64 aspects is cleaned once
        clean = dict(zip(unique, self.record.clean_texts(unique)))
        for i, (text, aspect) in enumerate(zip(texts, aspects, strict=True)):
            if not aspect_admitted(self.record, clean[text], clean[aspect]):
                raise not_in_text(i, aspect)
        self._aspect_ids(self.scorer.tokenizer, [clean[a] for a in aspects])
        proba = self.scorer.predict_proba([clean[t] for t in texts], batch_size=batch_size,
                                          aspects=[clean[a] for a in aspects])
        return [self._row(p) for p in proba]

    def aspect_token_lengths(self, text: str, aspects: list[str], max_chars: int = MAX_TEXT_CHARS) -> list[int]:
        """aspect_inputs' checks, the text's cleaned length (as token_lengths checks it) and the aspects' tokens
        (`_aspect_ids`): a DataError naming the field or aspect at fault; then the tokens each (text, aspect) pair
        occupies in a forward pass, counted as token_lengths counts a text: the text's and the aspect's tokens with
        the prompt (or the pair's special tokens) once, cut at max_length."""
        aspects, clean_text, clean_aspects = aspect_inputs(self.record, text, aspects)
        if len(clean_text) > max_chars:
            raise DataError(too_long_cleaned("text", len(clean_text), max_chars))
        tokenizer, overhead, answer, rows = self._token_counter
        scorer = self.scorer
        if scorer.head == "generative":
            overhead += len(scorer.formatter.middle_ids)
        else:  # the pair's special tokens instead of a single text's
            overhead = tokenizer.num_special_tokens_to_add(pair=True)
        aspect_ids = self._aspect_ids(tokenizer, clean_aspects)
        text_ids = tokenizer([clean_text], add_special_tokens=False)["input_ids"][0]
        return [(min(scorer.max_length, overhead + len(text_ids) + len(ids)) + answer) * rows for ids in aspect_ids]

    @functools.cached_property
    def aspect_budget(self) -> tuple[int, str]:
        """The most tokens an aspect may have, and why: one limit per model, adapter or export. A generative model
        (the record's head): half of the review's room in the prompt (PromptFormatter.aspect_ids' rule); its export
        scores with a classifier whose tokenizer adds the prompt to the pair, so the review's room there is
        max_length less the tokens the pair adds. A classifier: the pair (text, aspect) is encoded with truncation
        'only_first' at max_length, which can cut only the text and fails ("Truncation error") unless one token of
        the text is left: max_length less the tokens the pair adds (special tokens) less 1."""
        scorer = self.scorer
        half = "(half of the review's room in this model's max_length)"
        if scorer.head == "generative":
            return scorer.formatter.text_budget // 2, half
        added = scorer.tokenizer.num_special_tokens_to_add(pair=True)
        if self.record.head == "generative":  # its export: the wrapped tokenizer's max_length is prompt + review
            return (scorer.max_length - added) // 2, half
        pair = f"{added} go to the pair's special tokens, " if added else ""
        return (scorer.max_length - added - 1,
                f"for this model's max_length of {scorer.max_length} tokens ({pair}at least 1 to the text); shorten it")

    def _aspect_ids(self, tokenizer, clean_aspects: list[str]) -> list[list[int]]:
        """Each cleaned aspect's tokens as the pair encodes them, or a DataError naming the first one over
        `aspect_budget` (`aspects[0]: 212 tokens; at most 93 for this model's max_length ...`): checked before
        any forward pass, on every path (predict, predict_pairs, the web API's token count)."""
        lead = " " if self.scorer.head == "generative" and self.scorer.formatter.aspect_space else ""
        aspect_ids = tokenizer([lead + a for a in clean_aspects], add_special_tokens=False)["input_ids"]
        budget, why = self.aspect_budget
        for i, ids in enumerate(aspect_ids):
            if len(ids) > budget:
                raise DataError(f"aspects[{i}]: {len(ids)} tokens; at most {budget} {why}")
        return aspect_ids

    def token_lengths(self, texts: list[str], max_chars: int = MAX_TEXT_CHARS) -> list[int]:
        """Tokens each text occupies in a forward pass (its prompt included, cut at max_length; times the labels
        when each label's answer is scored as its own row): what the web API budgets its forward passes by. A text
        whose cleaned form is over `max_chars` (the web API passes its --max-chars, the limit on the text as sent:
        NFKC spells U+FDFA in 18 characters, so 5,000 of them become 90,000, seconds of tokenizing on the one
        counting thread, and 1,111 become 19,998) is a DataError, and is never tokenized: no text is counted longer
        than a text the server admits as sent."""
        tokenizer, overhead, answer, rows = self._token_counter
        cleaned = []
        for i, text in enumerate(texts):  # one at a time: the first text over the limit stops the count
            [clean] = self.record.clean_texts([text])
            if len(clean) > max_chars:
                raise DataError(too_long_cleaned(f"texts[{i}]", len(clean), max_chars))
            cleaned.append(clean)
        counts = tokenizer(cleaned, add_special_tokens=False)["input_ids"]
        return [(min(self.scorer.max_length, overhead + len(ids)) + answer) * rows for ids in counts]

    @functools.cached_property
    def _token_counter(self):
        """A tokenizer of its own (a fast tokenizer's truncation settings are shared state, and counting runs
        beside a forward pass), the tokens the prompt adds, the answer's (answers of several tokens), and rows
        per text."""
        scorer = self.scorer
        tokenizer = copy.deepcopy(scorer.tokenizer)
        if scorer.head == "generative":
            overhead = len(scorer.formatter.prefix_ids) + len(scorer.formatter.suffix_ids)
            if scorer.single_token:
                return tokenizer, overhead, 0, 1
            # each label's answer is a row of its own: prompt and text (cut), then the longest answer, per label
            return tokenizer, overhead, max(len(a) for a in scorer.answers), len(scorer.answers)
        return tokenizer, len(tokenizer("")["input_ids"]), 0, 1

    def describe(self) -> dict:
        """What /info and the CLI report: model, labels, head, where it came from."""
        record = self.record
        return {
            "path": str(self.path),
            "kind": "export" if record.is_export else "adapter",
            "backend": self.backend,  # onnx: ONNX Runtime on the export's onnx/model.onnx; torch: PyTorch
            "head": record.head,
            "task": record.task,  # sentence, or aspect_term / aspect_category: predict takes aspects
            "labels": self.labels,
            "base_model": record.base_model,
            "quantization": None if record.is_export else record.quantization.model_dump(),
            "max_length": record.max_length,
            # how every text is cleaned before scoring (as prepare cleaned the training texts); None: as given
            "clean": None if record.clean is None else record.clean.model_dump(),
            "train_loss": record.train_loss,
            "eval_loss": record.eval_loss,
        }
