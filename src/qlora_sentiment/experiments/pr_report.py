"""A pull-request report of two revisions: DVC's metrics and params diffs and each side's confusion matrix.

Everything it reads is in git (metrics and plots are `cache: false`), so it needs no DVC remote and no rerun.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from qlora_sentiment.core.errors import QloraError
from qlora_sentiment.core.io import write_bytes, write_text

IMAGE = "plots/confusion_matrix.png"
SUMMARY = "metrics/evaluation.md"


def _run(cmd: list[str], repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=repo, capture_output=True)


def dvc_markdown(kind: str, a: str, b: str, repo: Path) -> str:
    """`dvc metrics diff` / `dvc params diff` as a markdown table (or a sentence when nothing changed)."""
    revs = [a] if b == "workspace" else [a, b]  # DVC compares with the workspace when the second is left out
    result = _run(["dvc", kind, "diff", *revs, "--md"], repo)
    if result.returncode != 0:
        raise QloraError(f"dvc {kind} diff {a} {b} failed: {result.stderr.decode(errors='replace').strip()[-300:]}")
    text = result.stdout.decode().strip()
    return text or f"No {kind} changed between `{a}` and `{b}`."


def file_at(rev: str, path: str, repo: Path) -> bytes | None:
    """A file's bytes at a revision ("workspace" = the working tree); None when it did not exist there."""
    if rev == "workspace":
        target = Path(repo) / path
        return target.read_bytes() if target.is_file() else None
    result = _run(["git", "show", f"{rev}:{path}"], repo)
    return result.stdout if result.returncode == 0 else None


def resolve(rev: str, repo: Path) -> str:
    if rev == "workspace":
        return rev
    result = _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo)
    if result.returncode != 0:
        raise QloraError(f"'{rev}' is not a git revision here (a branch, tag, commit or experiment name)")
    return result.stdout.decode().strip()


def _headline(summary: bytes | None) -> str:
    """The first paragraph after the title of metrics/evaluation.md: accuracy with its interval."""
    if not summary:
        return ""
    paragraphs = [p.strip() for p in summary.decode().split("\n\n") if p.strip() and not p.startswith("#")]
    return paragraphs[0] if paragraphs else ""


def write_report(a: str, b: str, out: Path, repo: Path = Path(".")) -> Path:
    """out/report.md plus one confusion-matrix image per side; returns the report's path."""
    out = Path(out)
    sides = []
    for label, rev in (("base", a), ("head", b)):
        commit = resolve(rev, repo)
        image = file_at(commit, IMAGE, repo)
        name = f"confusion_{label}_{re.sub(r'[^A-Za-z0-9]+', '-', rev)}.png"
        sides.append((label, rev, commit, image, name, _headline(file_at(commit, SUMMARY, repo))))
    metrics = dvc_markdown("metrics", a, b, repo)
    params = dvc_markdown("params", a, b, repo)
    cells = [f"![{label} `{rev}` confusion matrix]({name})" if image else f"(no `{IMAGE}` at `{rev}`)"
             for label, rev, _, image, name, _ in sides]
    lines = [
        f"## Model report: `{a}` → `{b}`", "",
        *(f"- **{label}** `{rev}` ({commit[:7]}): {headline or 'no evaluation summary'}"
          for label, rev, commit, _, _, headline in sides), "",
        "### Metrics (`dvc metrics diff`)", "", metrics, "",
        "### Parameters (`dvc params diff`)", "", params, "",
        "### Confusion matrix", "",
        f"| {sides[0][0]} `{a}` | {sides[1][0]} `{b}` |", "|---|---|", f"| {cells[0]} | {cells[1]} |", "",
    ]
    for _, _, _, image, name, _ in sides:
        if image:
            write_bytes(out / name, image)
    report = out / "report.md"
    write_text(report, "\n".join(lines))
    return report
