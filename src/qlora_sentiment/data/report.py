"""What prepare did to the data, in numbers (data/prepared/report.json) and pictures (one PNG per split)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from qlora_sentiment.config import DataConfig

PERCENTILES = (5, 25, 50, 75, 95)
CHANGED = ("normalised", "truncated", "target_repeated")  # counted with what was dropped, yet the rows are kept
COLOURS = {"negative": "#c0392b", "neutral": "#7f8c8d", "positive": "#27ae60"}


def _lengths(values: pd.Series) -> dict:
    if values.empty:
        return {}
    out = {f"p{q}": round(float(np.percentile(values, q)), 1) for q in PERCENTILES}
    return {**out, "max": int(values.max()), "mean": round(float(values.mean()), 1)}


def _overlap(parts: dict[str, pd.DataFrame], column: str) -> dict:
    """How many values two final splits share: 0 for texts (and for groups when splits were carved by group)."""
    return {f"{a}_{b}": len(set(parts[a][column]) & set(parts[b][column])) for a, b in combinations(parts, 2)}


def _aspects(part: pd.DataFrame) -> dict:
    """Aspects per sentence and how the polarities of one sentence's aspects mix (MAMS: always mixed)."""
    per = part.groupby("group")["label"]
    sizes = per.size()
    mixes = per.agg(lambda labels: "+".join(sorted(set(labels))))
    return {
        "sentences": int(len(sizes)),
        "aspects_per_sentence": {("4+" if n >= 4 else str(n)): int(c) for n, c in
                                 sizes.clip(upper=4).value_counts().sort_index().items()},
        "mixed_sentences": int((per.nunique() > 1).sum()),
        "polarity_mixes": {k: int(v) for k, v in mixes.value_counts().sort_index().items()},
        "distinct_aspects": int(part["aspect"].str.casefold().nunique()),
    }


def build(cfg: DataConfig, raw: dict[str, pd.DataFrame], dropped: dict, parts: dict[str, pd.DataFrame],
          revision: str | None = None) -> dict:
    report = {
        # revision: the hub commit the rows were read from (null for offline corpora and local files)
        "source": {"source": cfg.source, "name": cfg.name, "config": cfg.config, "revision": revision,
                   "splits": cfg.splits},
        "rows_read": {name: len(rows) for name, rows in raw.items()},
        "dropped": {k: v for k, v in dropped.items() if k not in (*CHANGED, "conflicting_labels")},
        # kept rows: texts cleaning changed, texts cut, and (aspect files) $T$ blocks naming their target twice or more
        "changed": {"normalised": dropped.get("normalised", 0), "truncated": dropped.get("truncated", 0),
                    **{k: dropped[k] for k in CHANGED[2:] if k in dropped}},
        "conflicting_labels": dropped.get("conflicting_labels", 0),
    }
    for name, part in parts.items():
        report[name] = {
            "n": len(part),
            "labels": {lab: int((part["label"] == lab).sum()) for lab in cfg.labels},
            "chars": _lengths(part["text"].str.len()),
            "words": _lengths(part["text"].str.split().str.len()),
        }
        if cfg.group_column:
            report[name]["groups"] = int(part["group"].nunique())
        if cfg.task != "sentence":
            report[name]["aspects"] = _aspects(part)
    report["overlap"] = {"texts": _overlap(parts, "key")}
    if cfg.group_column or cfg.task != "sentence":
        report["overlap"]["groups"] = _overlap(parts, "group")
    return report


def render(report: dict, parts: dict[str, list[dict]], labels: list[str]) -> dict[str, bytes]:
    """A PNG per split: label counts and the histogram of text lengths. Rendered in memory, written by the stage."""
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    images = {}
    longest = max((len(r["text"]) for rows in parts.values() for r in rows), default=1)
    bins = np.linspace(0, longest, 31)
    for name, rows in parts.items():
        fig, (bars, hist) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
        counts = [report[name]["labels"][lab] for lab in labels]
        bars.bar(labels, counts, color=[COLOURS.get(lab, "#2e86c1") for lab in labels])
        for i, c in enumerate(counts):
            bars.annotate(str(c), (i, c), ha="center", va="bottom")
        bars.set_title(f"{name}: {report[name]['n']} examples by label")
        hist.hist([len(r["text"]) for r in rows], bins=bins, color="#2e86c1")
        chars = report[name]["chars"]
        hist.axvline(chars["p50"], color="black", linestyle="--", linewidth=1, label=f"median {chars['p50']:.0f}")
        hist.set_title(f"{name}: text length (characters)")
        hist.set_xlabel("characters")
        hist.set_ylabel("examples")
        hist.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})  # byte-identical for equal data
        plt.close(fig)
        images[name] = buffer.getvalue()
    return images


def write_images(images: dict[str, bytes], folder: Path) -> None:
    from qlora_sentiment.core.io import write_bytes

    for name, data in images.items():
        write_bytes(Path(folder) / f"{name}.png", data)
