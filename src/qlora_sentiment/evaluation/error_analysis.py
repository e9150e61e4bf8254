"""Where the model goes wrong: its most confident mistakes, and error rates by linguistic bucket."""

from __future__ import annotations

import re

import numpy as np

# Cues that make sentiment hard for a small model. Matched on lower-cased word tokens ("n't" is split off).
NEGATION = {"not", "no", "never", "n't", "nothing", "nobody", "none", "neither", "nor", "nowhere", "hardly",
            "barely", "scarcely", "without", "cannot"}
CONTRAST = {"but", "however", "although", "though", "yet", "despite", "nevertheless", "nonetheless",
            "whereas", "still", "instead", "otherwise"}
INTENSIFIERS = {"very", "really", "so", "extremely", "incredibly", "totally", "utterly", "absolutely", "too",
                "quite", "truly", "remarkably", "highly", "deeply", "thoroughly", "most"}
_WORD = re.compile(r"n't|[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("n't", " n't"))


def buckets_of(text: str) -> dict[str, bool]:
    tokens = set(words(text))
    return {
        "negation": bool(tokens & NEGATION),
        "contrast": bool(tokens & CONTRAST),
        "intensifier": bool(tokens & INTENSIFIERS),
        "question_mark": "?" in text,
        "exclamation_mark": "!" in text,
    }


def _rate(errors: np.ndarray) -> dict:
    return {"n": int(errors.size), "errors": int(errors.sum()),
            "error_rate": float(errors.mean()) if errors.size else None}


def bucket_error_rates(predictions: list[dict]) -> dict:
    """Error rate with and without each cue, and by word-count quartile."""
    errors = np.array([p["predicted"] != p["label"] for p in predictions])
    flags = [buckets_of(p["text"]) for p in predictions]
    out = {"overall": _rate(errors), "cues": {}}
    for name in flags[0] if flags else []:
        has = np.array([f[name] for f in flags])
        out["cues"][name] = {"with": _rate(errors[has]), "without": _rate(errors[~has])}
    lengths = np.array([len(words(p["text"])) for p in predictions])
    if lengths.size:
        edges = np.percentile(lengths, [25, 50, 75])
        quartile = np.searchsorted(edges, lengths, side="right")  # 0..3
        out["length_quartiles"] = []
        for q in range(4):
            members = quartile == q
            lo = int(lengths[members].min()) if members.any() else None
            hi = int(lengths[members].max()) if members.any() else None
            out["length_quartiles"].append({"quartile": q + 1, "words": [lo, hi], **_rate(errors[members])})
    return out


def confident_mistakes(predictions: list[dict]) -> list[dict]:
    """Misclassified examples, the most confident first (ties by id, so the order is stable)."""
    rows = [
        {"id": p["id"], "label": p["label"], "predicted": p["predicted"],
         "confidence": p["probabilities"][p["predicted"]], "text": p["text"]}
        for p in predictions if p["predicted"] != p["label"]
    ]
    return sorted(rows, key=lambda r: (-r["confidence"], str(r["id"])))
