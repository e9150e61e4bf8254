"""The Python API: `SentimentAnalyzer.from_pretrained(folder).predict(texts)`.

`folder` is an adapter written by the train stage (its base is resolved from the recorded reference) or a merged
export written by the export stage. Predictions come from the same LabelScorer that the evaluate stage uses.
"""

from __future__ import annotations

from pathlib import Path

from qlora_sentiment.model.adapter import load_scorer
from qlora_sentiment.model.record import ModelRecord, read_record
from qlora_sentiment.model.scoring import LabelScorer
from qlora_sentiment.serving.validation import MAX_TEXT_CHARS, check_texts  # noqa: F401 (the API's names)


class SentimentAnalyzer:
    def __init__(self, scorer: LabelScorer, record: ModelRecord, path: Path):
        self.scorer, self.record, self.path = scorer, record, path

    @classmethod
    def from_pretrained(cls, path: str | Path, base: str | Path | None = None) -> "SentimentAnalyzer":
        """`base`: the base_model stage's folder (optional for adapters: the recorded base is used)."""
        from qlora_sentiment.model.export import load_export

        path = Path(path)
        record = read_record(path)
        scorer = load_export(path, record) if record.is_export else load_scorer(path, base)
        return cls(scorer, record, path)

    @property
    def labels(self) -> list[str]:
        return list(self.scorer.labels)

    def predict(self, texts, batch_size: int = 16) -> list[dict]:
        """[{label, probabilities: {label: p}}] in input order; a single string gives a one-item list."""
        texts = check_texts(texts)
        if not texts:
            return []
        proba = self.scorer.predict_proba(texts, batch_size=batch_size)
        return [
            {"label": self.labels[int(p.argmax())], "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}}
            for p in proba
        ]

    def describe(self) -> dict:
        """What /info and the CLI report: model, labels, head, where it came from."""
        record = self.record
        return {
            "path": str(self.path),
            "kind": "export" if record.is_export else "adapter",
            "head": record.head,
            "labels": self.labels,
            "base_model": record.base_model,
            "quantization": None if record.is_export else record.quantization.model_dump(),
            "max_length": record.max_length,
            "train_loss": record.train_loss,
            "eval_loss": record.eval_loss,
        }
