"""Prepare a dataset: load it (sources.py), clean it (cleaning.py), split it deterministically, report on it.

Splits come from the source (data.splits) or are carved by data.split fractions: by group when data.group_column
is set (no movie in two splits) or the task is an aspect task (no sentence in two splits), otherwise stratified by
label. Everything is decided by the seed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from qlora_sentiment.data.cleaning import clean_aspects, clean_texts, deduplicate, filter_confidence, map_labels
from qlora_sentiment.config import DataConfig
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.data import bad_input
from qlora_sentiment.data.sources import hub_revision, load_raw, origin_of

SPLITS = ("train", "validation", "test")
CARVE_ORDER = ("test", "validation")  # carved from the pool first, so they fill to their target


def grouped(cfg: DataConfig) -> bool:
    """Whether rows come in groups that must stay in one split: a group column, or an aspect task's sentences."""
    return cfg.group_column is not None or cfg.task != "sentence"


def _fractions(carve: tuple[str, ...], cfg: DataConfig) -> dict[str, float]:
    """Shares of the pool for train and each carved split, from data.split renormalised over them."""
    wanted = {name: getattr(cfg.split, name) for name in ("train", *carve)}
    total = sum(wanted.values())
    return {name: value / total for name, value in wanted.items()}


def _group_carve(rows: pd.DataFrame, shares: dict[str, float], seed: int) -> dict[str, pd.DataFrame]:
    """Whole groups go to one split; groups are shuffled by the seed and dealt until each split is full."""
    groups = sorted(rows["group"].unique())
    np.random.default_rng(seed).shuffle(groups)
    sizes = rows.groupby("group").size()
    carve = [name for name in CARVE_ORDER if name in shares]
    targets = {name: shares[name] * len(rows) for name in carve}
    assigned, filled = {}, dict.fromkeys(carve, 0)
    for group in groups:
        target = next((name for name in carve if filled[name] < targets[name]), "train")
        assigned[group] = target
        if target != "train":
            filled[target] += sizes[group]
    which = rows["group"].map(assigned)
    return {name: rows[which == name] for name in shares}


def _stratified_carve(rows: pd.DataFrame, shares: dict[str, float], seed: int) -> dict[str, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    out, rest, left = {}, rows, 1.0
    for name in (n for n in CARVE_ORDER if n in shares):
        share = shares[name] / left
        try:
            rest, out[name] = train_test_split(rest, test_size=share, stratify=rest["label"], random_state=seed)
        except ValueError as exc:  # too few rows of a label to put one in every split
            raise DataError(f"data.split: cannot carve a stratified {name} split from {len(rest)} rows: "
                            f"{exc}") from None
        left -= shares[name]
    out["train"] = rest
    return out


def carve(parts: dict[str, pd.DataFrame], cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """The source's splits as given; the missing ones carved from train (or from the pool, "all")."""
    pool = parts.get("all", parts.get("train"))
    missing = tuple(name for name in CARVE_ORDER if name not in parts)
    carved = parts if not missing else {
        **{k: v for k, v in parts.items() if k != "all"},
        **(_group_carve if grouped(cfg) else _stratified_carve)(pool, _fractions(missing, cfg), seed),
    }
    return {name: carved[name] for name in SPLITS}


def _balance(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Undersample every label to the rarest one's count (seeded)."""
    smallest = frame["label"].value_counts().min()
    return frame.groupby("label", group_keys=False).sample(n=smallest, random_state=seed).sort_index()


def _cap(frame: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most `cap` rows, keeping the label proportions (deterministic from the seed)."""
    if cap is None or len(frame) <= cap:
        return frame
    from sklearn.model_selection import train_test_split

    counts = frame["label"].value_counts()
    stratify = frame["label"] if counts.min() >= 2 and cap >= len(counts) else None
    kept, _ = train_test_split(frame, train_size=cap, stratify=stratify, random_state=seed)
    return kept


def _cap_sentences(frame: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most `cap` aspects in whole sentences (an aspect task): sentences shuffled by the seed and kept while they
    fit, so that no sentence loses some of its aspects (the error analysis reads sentences whole)."""
    if cap is None or len(frame) <= cap:
        return frame
    groups = sorted(frame["group"].unique())
    np.random.default_rng(seed).shuffle(groups)
    sizes, kept, total = frame.groupby("group").size(), set(), 0
    for group in groups:
        if total + sizes[group] <= cap:
            kept.add(group)
            total += sizes[group]
    return frame[frame["group"].isin(kept)]


def size(parts: dict[str, pd.DataFrame], cfg: DataConfig, seed: int) -> tuple[dict[str, pd.DataFrame], dict]:
    """Balance train if asked, cap each split, fix a seeded row order; counts what each step removed."""
    caps = {"train": cfg.max_train, "validation": cfg.max_validation, "test": cfg.max_test}
    out, counts = {}, {"balance": 0, "cap": {}}
    for name in SPLITS:
        part = parts[name]
        if cfg.balance and name == "train":
            balanced = _balance(part, seed)
            counts["balance"] = len(part) - len(balanced)
            part = balanced
        capped = (_cap if cfg.task == "sentence" else _cap_sentences)(part, caps[name], seed)
        counts["cap"][name] = len(part) - len(capped)
        # A fixed, seed-dependent order: training shuffles again, but files diff cleanly between runs.
        out[name] = capped.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        if out[name].empty:
            raise DataError(f"data.split: the {name} split is empty; raise data.split.{name} or use more data")
    return out, counts


def clean(raw: dict[str, pd.DataFrame], cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict]:
    """Labels, confidence, texts per source split, then duplicates within and across them."""
    origin = origin_of(cfg)
    dropped: dict = {}
    parts = {}
    for name, rows in raw.items():
        where = origin if len(raw) == 1 else f"{origin} split '{name}'"
        for key, value in rows.attrs.get("skipped", {}).items():  # what an aspect file's reader left out
            dropped[key] = dropped.get(key, 0) + value
        for step in (lambda r: map_labels(r, cfg, where), lambda r: filter_confidence(r, cfg),
                     lambda r: clean_texts(r, cfg.clean, where), lambda r: clean_aspects(r, cfg)):
            rows, counts = step(rows)
            for key, value in counts.items():
                dropped[key] = dropped.get(key, 0) + value
        parts[name] = rows
    if cfg.splits is None:  # pool the source's splits; ours are carved below
        parts = {"all": pd.concat(parts.values(), ignore_index=True)}
    parts, dup = deduplicate(parts, cfg.clean.dedup)
    dropped.update(dup)
    for name, rows in parts.items():
        where = origin if name == "all" else f"{origin} split '{name}'"
        if rows.empty:
            raise DataError(bad_input("empty-after-cleaning").format(where=where, dropped=_summary(dropped)))
        present = sorted(set(rows["label"]))
        if name in ("all", "train") and len(present) < 2:
            raise DataError(bad_input("single-class").format(where=where, present=present, labels=cfg.labels))
    return parts, dropped


def _summary(dropped: dict) -> str:
    kept = ("normalised", "target_repeated")  # counted beside the drops, yet no row went
    flat = {k: v for k, v in dropped.items() if isinstance(v, int) and v and k not in kept}
    return ", ".join(f"{k}: {v}" for k, v in flat.items()) or "nothing was dropped"


def example_id(text: str, aspect: str | None = None) -> str:
    key = text if aspect is None else text + "\x1f" + aspect
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _records(part: pd.DataFrame, cfg: DataConfig, train_aspects: dict[str, int] | None) -> list[dict]:
    """One dict per example; an aspect example also says how often its aspect occurs in train (the error
    analysis's frequency buckets: unseen aspects are the hard ones)."""
    rows = []
    for r in part.to_dict("records"):
        aspect = r.get("aspect") if cfg.task != "sentence" else None
        row = {"id": example_id(r["text"], aspect), "text": r["text"]}
        if aspect is not None:
            row["aspect"] = aspect
        row["label"] = r["label"]
        if grouped(cfg):
            row["group"] = r["group"]
        if aspect is not None and train_aspects is not None:
            row["aspect_train_count"] = train_aspects.get(aspect.casefold(), 0)
        rows.append(row)
    return rows


def prepare(cfg: DataConfig, seed: int) -> tuple[dict[str, list[dict]], dict]:
    """Pure data step: rows for each split and the data report (see data_report.build)."""
    from qlora_sentiment.data.report import build

    revision = hub_revision(cfg)
    raw = load_raw(cfg, revision)
    parts, dropped = clean(raw, cfg)
    parts, sized = size(carve(parts, cfg, seed), cfg, seed)
    train_aspects = parts["train"]["aspect"].str.casefold().value_counts().to_dict() if cfg.task != "sentence" else None
    records = {name: _records(part, cfg, None if name == "train" else train_aspects) for name, part in parts.items()}
    return records, build(cfg, raw, {**dropped, **sized}, parts, revision)
