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


# aspect_train_count buckets: aspects train never had, had a few times, had often
FREQUENCY_BUCKETS = (("unseen in train", 0, 0), ("1-4 times in train", 1, 4), ("5+ times in train", 5, None))


def aspect_error_rates(predictions: list[dict]) -> dict:
    """The aspect tasks' questions: is the model right when a sentence's aspects disagree (it must read which
    words belong to which aspect) as often as when they agree, and on aspects it never saw in training?"""
    errors = np.array([p["predicted"] != p["label"] for p in predictions])
    by_sentence: dict[str, list[int]] = {}
    for i, p in enumerate(predictions):
        by_sentence.setdefault(p.get("group", p["text"]), []).append(i)
    kind = np.empty(len(predictions), dtype=object)
    for members in by_sentence.values():
        labels = {predictions[i]["label"] for i in members}
        kind[members] = ("one aspect" if len(members) == 1 else "aspects agree" if len(labels) == 1
                         else "aspects disagree")
    out = {"sentences": {name: _rate(errors[kind == name]) for name in ("one aspect", "aspects agree",
                                                                         "aspects disagree")}}
    if all("aspect_train_count" in p for p in predictions):
        seen = np.array([p["aspect_train_count"] for p in predictions])
        out["aspect_frequency"] = {name: _rate(errors[(seen >= lo) & (seen <= (hi if hi is not None else seen.max()))])
                                   for name, lo, hi in FREQUENCY_BUCKETS}
    return out


def confident_mistakes(predictions: list[dict]) -> list[dict]:
    """Misclassified examples, the most confident first (ties by id, so the order is stable)."""
    rows = [
        {"id": p["id"], "label": p["label"], "predicted": p["predicted"],
         "confidence": p["probabilities"][p["predicted"]], **({"aspect": p["aspect"]} if "aspect" in p else {}),
         "text": p["text"]}
        for p in predictions if p["predicted"] != p["label"]
    ]
    return sorted(rows, key=lambda r: (-r["confidence"], str(r["id"])))
