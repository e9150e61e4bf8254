"""The Python API: `SentimentAnalyzer.from_pretrained(folder).predict(texts)`.

`folder` is an adapter written by the train stage (its base is resolved from the recorded reference) or a merged
export written by the export stage. Predictions come from the same LabelScorer that the evaluate stage uses.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .evaluation import load_scorer, read_model_meta
from .scoring import LabelScorer

MAX_TEXT_CHARS = 20_000  # far beyond max_length tokens; longer is a mistake (a whole file as one text)


def check_texts(texts, max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    """One clear error naming the first bad item."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"texts[{i}]: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise DataError(f"texts[{i}]: empty text")
        if len(text) > max_chars:
            raise DataError(f"texts[{i}]: {len(text)} characters; at most {max_chars} per text")
    return texts


class SentimentAnalyzer:
    def __init__(self, scorer: LabelScorer, meta: dict, path: Path):
        self.scorer, self.meta, self.path = scorer, meta, path

    @classmethod
    def from_pretrained(cls, path: str | Path, base: str | Path | None = None) -> "SentimentAnalyzer":
        """`base`: the base_model stage's folder (optional for adapters: the recorded base is used)."""
        from .export import load_export

        path = Path(path)
        meta = read_model_meta(path)
        scorer = load_export(path, meta) if "export" in meta else load_scorer(path, base)
        return cls(scorer, meta, path)

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
        meta = self.meta
        return {
            "path": str(self.path),
            "kind": "export" if "export" in meta else "adapter",
            "head": meta["head"],
            "labels": self.labels,
            "base_model": meta["base_model"],
            "quantization": meta["quantization"] if "export" not in meta else None,
            "max_length": meta["max_length"],
            "train_loss": meta.get("train_loss"),
            "eval_loss": meta.get("eval_loss"),
        }
