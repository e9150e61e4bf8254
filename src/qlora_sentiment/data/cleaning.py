"""Turn raw rows into clean, labelled, de-duplicated ones, counting everything that is changed or dropped.

Each step takes a frame and returns (frame, counts) so prepare can report exactly why rows went missing.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from qlora_sentiment.config import CleanConfig, DataConfig
from qlora_sentiment.config import text as text_cleaning
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.data import bad_input

# Common spellings of each label; params `data.label_map` adds to (and wins over) these.
LABEL_ALIASES = {
    "negative": ("negative", "neg", "rotten", "bad", "-"),
    "neutral": ("neutral", "neu", "mixed", "none"),
    "positive": ("positive", "pos", "fresh", "good", "+"),
}
DROP = object()  # label_map value null: rows with that raw value are not sentiment rows
CONFLICT = "conflict"  # SemEval's aspect polarity for "both": not one of the labels, dropped and counted

_NOT_WORD = re.compile(r"[\W_]+")


def label_lookup(labels: list[str], label_map: dict, numeric_codes: bool = True) -> dict:
    """Lower-cased raw value -> label name (or DROP): aliases, integer codes, then the user's map."""
    lookup = {}
    for name in labels:
        for alias in LABEL_ALIASES.get(name, (name,)):
            lookup[alias] = name
        lookup[name.lower()] = name
    if numeric_codes:  # the usual convention: 0/1 for binary, 0/1/2 = negative/neutral/positive
        lookup.update({str(code): name for code, name in enumerate(labels)})
    lookup.update({str(k).strip().lower(): DROP if v is None else v for k, v in label_map.items()})
    return lookup


def _raw_key(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _from_rating(value, thresholds: list[float], labels: list[str]):
    try:
        rating = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(rating):
        return None
    return next((lab for bound, lab in zip(thresholds, labels) if rating <= bound), labels[-1])


def map_labels(rows: pd.DataFrame, cfg: DataConfig, where: str) -> tuple[pd.DataFrame, dict]:
    """Raw labels -> names; an unknown value stops everything with the row and the fix."""
    lookup = label_lookup(cfg.labels, cfg.label_map, numeric_codes=cfg.rating_thresholds is None)
    if cfg.task != "sentence":
        lookup.setdefault(CONFLICT, CONFLICT)
    names = []
    for row, raw in zip(rows["row"], rows["raw_label"]):
        name = lookup.get(_raw_key(raw))
        if name is None and cfg.rating_thresholds is not None:
            name = _from_rating(raw, cfg.rating_thresholds, cfg.labels)
        if name is None:
            if raw is None or (isinstance(raw, float) and math.isnan(raw)):
                raise DataError(bad_input("unlabelled-rows").format(where=where, row=row))
            raise DataError(bad_input("label-outside-map").format(where=where, row=row, raw=raw, labels=cfg.labels,
                                                               first=cfg.labels[0]))
        names.append(name)
    conflict = pd.Series([n == CONFLICT and CONFLICT not in cfg.labels for n in names], index=rows.index)
    dropped = pd.Series([n is DROP for n in names], index=rows.index)
    keep = ~(dropped | conflict)
    rows = rows.assign(label=[n if n is not DROP else None for n in names])[keep]
    counts = {"label_dropped": int(dropped.sum())}
    return rows, counts if cfg.task == "sentence" else {**counts, "conflict": int(conflict.sum())}


def filter_confidence(rows: pd.DataFrame, cfg: DataConfig) -> tuple[pd.DataFrame, dict]:
    if cfg.min_confidence is None:
        return rows, {}
    keep = rows["confidence"].fillna(-math.inf) >= cfg.min_confidence  # no value = not confident enough
    return rows[keep], {"low_confidence": int((~keep).sum())}


def clean_text(text, cfg: CleanConfig) -> str:
    """config/text.py's cleaning, the one every scoring entry point applies too (the model records it)."""
    return text_cleaning.clean_text(text, cfg) if isinstance(text, str) else ""


def clean_aspects(rows: pd.DataFrame, cfg: DataConfig) -> tuple[pd.DataFrame, dict]:
    """Aspects cleaned as texts are (scoring cleans both alike); empty ones dropped, and for aspect_term a term
    the cleaned text does not contain (a label about words the model never sees), by the rule every model applies
    to the aspects it is given (config/text.py aspect_in_text: "art" is not in "The party was fun")."""
    if cfg.task == "sentence":
        return rows, {}
    aspects = pd.Series([clean_text(a, cfg.clean) for a in rows["aspect"]], index=rows.index)
    empty = aspects == ""
    absent = pd.Series(False, index=rows.index)
    if cfg.task == "aspect_term":
        absent = ~empty & pd.Series([not text_cleaning.aspect_in_text(a, t) for a, t in zip(aspects, rows["text"])],
                                    index=rows.index)
    rows = rows.assign(aspect=aspects)[~(empty | absent)]
    return rows, {"empty_aspect": int(empty.sum()), "aspect_not_in_text": int(absent.sum())}


def clean_texts(rows: pd.DataFrame, cfg: CleanConfig, where: str) -> tuple[pd.DataFrame, dict]:
    """Normalise texts; drop empty and too-short ones; truncate, drop or refuse too-long ones."""
    texts = [clean_text(t, cfg) for t in rows["text"]]
    originals = [t if isinstance(t, str) else "" for t in rows["text"]]
    changed = sum(a != b.strip() for a, b in zip(texts, originals))
    rows = rows.assign(text=texts)
    lengths = rows["text"].str.len()
    empty = lengths == 0
    short = ~empty & (lengths < cfg.min_chars)
    long = lengths > cfg.max_chars
    if long.any() and cfg.too_long == "error":
        first = rows[long].iloc[0]
        raise DataError(f"{where}: row {first['row']}: text is {len(first['text']):,} characters, over "
                        f"data.clean.max_chars ({cfg.max_chars:,}); raise max_chars, or set data.clean.too_long to "
                        "truncate or drop")
    counts = {"empty": int(empty.sum()), "too_short": int(short.sum()), "normalised": int(changed)}
    if cfg.too_long == "truncate":
        rows.loc[long, "text"] = rows.loc[long, "text"].str.slice(0, cfg.max_chars).str.rstrip()
        counts["truncated"] = int(long.sum())
        return rows[~(empty | short)], counts
    counts["too_long"] = int(long.sum())
    return rows[~(empty | short | long)], counts


def dedup_key(text: str, mode: str, aspect: str | None = None) -> str:
    """Texts with the same key are duplicates: exact = same text; near = same words, ignoring case/punctuation.
    An aspect row's key is its (text, aspect) pair: one sentence holds several examples."""
    key = _NOT_WORD.sub(" ", text.casefold()).strip() if mode == "near" else text
    return key if aspect is None else key + "\x1f" + aspect.casefold()


def deduplicate(parts: dict[str, pd.DataFrame], mode: str) -> tuple[dict[str, pd.DataFrame], dict]:
    """Drop repeats within each part, then rows of a later part (validation, test) already in an earlier one.

    The second step is the leakage check: a test review that also sits in train measures memory, not skill.
    With mode none nothing is dropped; the data report still measures the overlap of the final splits.
    """
    counts = {"duplicate": 0, "conflicting_labels": 0, "leakage": {}}
    seen: dict[str, str] = {}  # key -> the part that holds it
    out = {}
    for name, rows in parts.items():
        kind = "near" if mode == "none" else mode
        aspects = rows["aspect"] if "aspect" in rows.columns else [None] * len(rows)
        keys = pd.Series([dedup_key(t, kind, a) for t, a in zip(rows["text"], aspects)], index=rows.index,
                         dtype=object)
        if mode != "none":
            # Same text, different labels: ambiguous; keep the first label, count it.
            conflicts = rows.assign(key=keys).groupby("key")["label"].nunique()
            counts["conflicting_labels"] += int((conflicts > 1).sum())
            repeat = keys.duplicated(keep="first")
            leaked = keys.isin(seen.keys()) & ~repeat
            for other in sorted({seen[k] for k in keys[leaked]}):
                counts["leakage"][f"{name}_in_{other}"] = int(sum(seen[k] == other for k in keys[leaked]))
            counts["duplicate"] += int(repeat.sum())
            rows, keys = rows[~(repeat | leaked)], keys[~(repeat | leaked)]
        seen.update({k: name for k in keys if k not in seen})
        out[name] = rows.assign(key=keys.to_numpy())
    return out, counts
