"""Score a split with base + adapter and turn the probabilities into metrics, predictions and confusion data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base_model import load_ref
from .config import QuantizationConfig
from .errors import ModelError
from .io import read_json
from .metrics import classification_metrics, confusion_counts
from .modeling import load_model, load_tokenizer
from .scoring import LabelScorer
from .training import META_FILE


@dataclass
class Evaluation:
    metrics: dict
    predictions: list[dict]
    confusion_rows: list[dict]
    counts: np.ndarray
    labels: list[str]


def load_scorer(adapter_dir: str | Path, base_dir: str | Path) -> LabelScorer:
    """Base model quantized exactly as in training, with the trained adapter on top."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    meta_file = adapter_dir / META_FILE
    if not meta_file.is_file():
        raise ModelError(f"{adapter_dir}: not an adapter folder written by the train stage (no {META_FILE})")
    meta = read_json(meta_file)
    ref = load_ref(base_dir)
    if meta["base_model"] != ref.info:
        raise ModelError(f"{adapter_dir}: trained on base {meta['base_model'].get('name')}, but {base_dir} holds "
                         f"{ref.info.get('name')}; run dvc repro to retrain")
    tokenizer = load_tokenizer(ref)
    model = load_model(ref, meta["head"], meta["labels"], QuantizationConfig(**meta["quantization"]), tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    return LabelScorer(model, tokenizer, meta["head"], meta["labels"], meta["prompt_template"], meta["max_length"])


def evaluate(scorer: LabelScorer, rows: list[dict], batch_size: int) -> Evaluation:
    labels = scorer.labels
    unknown = sorted({r["label"] for r in rows} - set(labels))
    if unknown:
        raise ModelError(f"test labels {unknown} are not among the adapter's labels {labels}; retrain on this data")
    proba = scorer.predict_proba([r["text"] for r in rows], batch_size=batch_size)
    predicted = [labels[i] for i in proba.argmax(axis=1)]
    truth = [r["label"] for r in rows]
    predictions = [
        {"id": r["id"], "text": r["text"], "label": r["label"], "predicted": p,
         "probabilities": {lab: round(float(x), 6) for lab, x in zip(labels, probs)}}
        for r, p, probs in zip(rows, predicted, proba)
    ]
    return Evaluation(
        metrics=classification_metrics(truth, proba, labels),
        predictions=predictions,
        confusion_rows=[{"actual": t, "predicted": p} for t, p in zip(truth, predicted)],
        counts=confusion_counts(truth, predicted, labels),
        labels=labels,
    )
