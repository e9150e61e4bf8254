"""The Python API: `SentimentAnalyzer.from_pretrained(folder).predict(texts)`.

`folder` is an adapter written by the train stage (its base is resolved from the recorded reference) or a merged
export written by the export stage (run by ONNX Runtime when it has its ONNX copy: `backend`). Predictions come from the same LabelScorer that the evaluate stage uses, on
texts cleaned as the training texts were (the CLI's predict and serve come through here too).
"""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path

from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.model.adapter import load_scorer
from qlora_sentiment.model.onnx import BACKENDS, OnnxClassifier
from qlora_sentiment.model.record import ModelRecord, read_record
from qlora_sentiment.model.scoring import LabelScorer
from qlora_sentiment.serving.validation import MAX_TEXT_CHARS, check_texts  # noqa: F401 (the API's names)

log = logging.getLogger(__name__)


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
            raise ModelError(f"{path}: --backend onnx needs a merged export (dvc repro export: models/export); an "
                             "adapter runs on torch")
        scorer = load_export(path, record, backend, threads) if record.is_export else load_scorer(path, base)
        return cls(scorer, record, path)

    @property
    def backend(self) -> str:
        return "onnx" if isinstance(self.scorer.model, OnnxClassifier) else "torch"

    @property
    def labels(self) -> list[str]:
        return list(self.scorer.labels)

    def predict(self, texts, batch_size: int = 16) -> list[dict]:
        """[{label, probabilities: {label: p}}] in input order; a single string gives a one-item list. Each text is
        cleaned as prepare cleaned the training texts (the record's `clean`: tags, format characters, ...)."""
        texts = check_texts(texts)
        if not texts:
            return []
        proba = self.scorer.predict_proba(self.record.clean_texts(texts), batch_size=batch_size)
        return [
            {"label": self.labels[int(p.argmax())], "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}}
            for p in proba
        ]

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Tokens each text occupies in a forward pass (its prompt included, cut at max_length; times the labels
        when each label's answer is scored as its own row): what the web API budgets its forward passes by."""
        tokenizer, overhead, answer, rows = self._token_counter
        counts = tokenizer(self.record.clean_texts(list(texts)), add_special_tokens=False)["input_ids"]
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
            "labels": self.labels,
            "base_model": record.base_model,
            "quantization": None if record.is_export else record.quantization.model_dump(),
            "max_length": record.max_length,
            # how every text is cleaned before scoring (as prepare cleaned the training texts); None: as given
            "clean": None if record.clean is None else record.clean.model_dump(),
            "train_loss": record.train_loss,
            "eval_loss": record.eval_loss,
        }
