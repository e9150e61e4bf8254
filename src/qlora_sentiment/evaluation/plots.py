"""Images a person reads at a glance (the DVC-rendered plots come from the JSON rows next to them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def confusion_png(counts: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), constrained_layout=True)
    for ax, data, subtitle, fmt in ((axes[0], counts, "counts", "d"),
                                    (axes[1], normalised, "row-normalised (recall)", ".2f")):
        image = ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.max() > 0 else 1)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(subtitle)
        threshold = data.max() / 2 if data.max() > 0 else 0.5
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center",
                        color="white" if data[i, j] > threshold else "black", fontsize=12)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(title)
    _save(fig, path)


def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 5), constrained_layout=True)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig, path: Path) -> None:
    """Atomic, and with fixed metadata so the PNG is byte-identical when the numbers are."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


def curves_png(curves: dict[str, list[dict]], x: str, y: str, path: Path, title: str, xlabel: str, ylabel: str,
               areas: dict[str, float] | None = None, diagonal: bool = False) -> None:
    """ROC or precision-recall curves, one line per label (one-vs-rest)."""
    fig, ax = _figure(title, xlabel, ylabel)
    if diagonal:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for label, rows in curves.items():
        name = label if not areas or label not in areas else f"{label} (area {areas[label]:.3f})"
        ax.plot([r[x] for r in rows], [r[y] for r in rows], linewidth=2, label=name)
    ax.legend(loc="lower right" if diagonal else "lower left")
    _save(fig, path)


def reliability_png(tuned: list[dict], baseline: list[dict] | None, path: Path, title: str) -> None:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    fig, ax = _figure(title, "confidence of the predicted label", "accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for rows, name, marker in ((tuned, "fine-tuned", "o"), (baseline, "baseline", "s")):
        if rows:
            ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker=marker, label=name)
            for r in rows:
                ax.annotate(str(r["count"]), (r["confidence"], r["accuracy"]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7, color="dimgrey")
    ax.legend(loc="upper left")
    _save(fig, path)
