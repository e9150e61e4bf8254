"""Compare DVC experiments (`dvc exp show --json`): pick the best by a validation metric, tabulate, plot.

Selection uses the validation split only (recorded by train); the test figures are shown beside it but never
used to choose, so the chosen experiment's test score stays an honest estimate.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from qlora_sentiment.core.errors import QloraError
from qlora_sentiment.problems.compare import bad_input

DEFAULT_METRIC = "metrics/train/metrics.json:validation.macro_f1"
SHOWN_METRICS = ("metrics/train/metrics.json:validation.accuracy", "metrics/metrics.json:accuracy",
                 "metrics/metrics.json:macro.f1")


@dataclass
class Experiment:
    name: str
    rev: str
    state: str  # success | queued | running | failed | baseline
    params: dict = field(default_factory=dict)  # dotted key -> value (params.yaml)
    metrics: dict = field(default_factory=dict)  # "file:dotted.key" -> number


def _flatten(data, prefix="") -> dict:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _experiment(state: dict, status: str) -> Experiment:
    data = state.get("data") or {}
    params = {}
    for result in (data.get("params") or {}).values():
        params.update(_flatten(result.get("data") or {}))
    metrics = {}
    for path, result in (data.get("metrics") or {}).items():
        for key, value in _flatten(result.get("data") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"{path}:{key}"] = value
    name = state.get("name") or state["rev"][:7]
    return Experiment(name=name, rev=state["rev"], state=status, params=params, metrics=metrics)


def parse_exp_show(show: list[dict]) -> list[Experiment]:
    """Every baseline commit and every experiment under it, in the order `dvc exp show` lists them."""
    out = []
    for baseline in show:
        if baseline.get("rev") == "workspace":
            continue  # the workspace repeats the last run (or holds uncommitted edits): not an experiment
        out.append(_experiment(baseline, "baseline"))
        for exp_range in baseline.get("experiments") or []:
            executor = exp_range.get("executor") or {}
            for state in exp_range.get("revs") or []:
                out.append(_experiment({**state, "name": exp_range.get("name") or state.get("name")},
                                       executor.get("state") or "success"))
    return out


def exp_show(repo: Path = Path(".")) -> list[dict]:
    try:
        result = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True)
    except FileNotFoundError:
        raise QloraError(bad_input("compare-without-dvc").format()) from None
    if result.returncode != 0:
        raise QloraError(f"dvc exp show --json failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


def read_exp_show(path: Path) -> list[dict]:
    """Saved `dvc exp show --json` output (compare --input), or one line naming the file."""
    try:
        show = json.loads(path.read_bytes())
        if not isinstance(show, list) or not all(isinstance(row, dict) for row in show):
            raise ValueError("expected a list of revisions")
        return show
    except FileNotFoundError:
        raise QloraError(bad_input("compare-input-missing").format(path=path)) from None
    except (OSError, ValueError) as exc:  # a folder, unreadable, not UTF-8, not JSON
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise QloraError(f"{path}: not `dvc exp show --json` output ({reason})") from None


def varying_params(experiments: list[Experiment]) -> list[str]:
    keys = sorted({k for e in experiments for k in e.params})
    return [k for k in keys if len({json.dumps(e.params.get(k), sort_keys=True) for e in experiments}) > 1]


def best(experiments: list[Experiment], metric: str) -> Experiment:
    scored = [e for e in experiments if e.state in ("success", "baseline") and metric in e.metrics]
    if not scored:
        raise QloraError(f"no finished experiment has the metric '{metric}' (run dvc exp show to see what exists)")
    return max(scored, key=lambda e: e.metrics[metric])  # ties: the first listed (the baseline first)


def table(experiments: list[Experiment], metric: str, chosen: Experiment) -> str:
    params = varying_params(experiments)
    metrics = [metric, *(m for m in SHOWN_METRICS if m != metric)]
    head = ["experiment", "state", *params, *(m.split(":")[1] + f" ({m.split(':')[0]})" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in sorted(experiments, key=lambda e: -e.metrics.get(metric, float("-inf"))):
        cells = [f"**{e.name}** (best)" if e is chosen else e.name, e.state,
                 *(str(e.params.get(p)) for p in params),
                 *(f"{e.metrics[m]:.4f}" if m in e.metrics else "–" for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(experiments: list[Experiment], metric: str, chosen: Experiment, path: Path) -> None:
    """One panel per varying parameter: its value against the selection metric (numbers on a log axis when
    they span a decade, as learning rates do); a bar per experiment when nothing numeric varies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qlora_sentiment.evaluation.plots import _save

    scored = [e for e in experiments if metric in e.metrics]
    numeric = [p for p in varying_params(scored)
               if all(isinstance(e.params.get(p), (int, float)) and not isinstance(e.params.get(p), bool)
                      for e in scored)]
    panels = numeric or ["experiment"]
    colours = ["#27ae60" if e is chosen else "#2e86c1" for e in scored]  # the chosen one in green
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), constrained_layout=True, squeeze=False)
    for ax, param in zip(axes[0], panels):
        if param == "experiment":
            ax.bar([e.name for e in scored], [e.metrics[metric] for e in scored], color=colours)
            ax.tick_params(axis="x", rotation=30)
        else:
            xs = [e.params[param] for e in scored]
            ax.scatter(xs, [e.metrics[metric] for e in scored], color=colours)
            for e, x in zip(scored, xs):
                ax.annotate(e.name, (x, e.metrics[metric]), textcoords="offset points", xytext=(4, 4), fontsize=7)
            positive = [x for x in xs if x > 0]
            if positive and len(positive) == len(xs) and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
            ax.set_xlabel(param)
        ax.set_ylabel(metric.split(":")[1])
        ax.grid(alpha=0.3)
    fig.suptitle(f"Experiments by {metric.split(':')[1]} (best: {chosen.name})")
    _save(fig, path)


def compare(show: list[dict], metric: str, out: Path) -> Experiment:
    """Write compare.md, compare.png and best.json into `out`; returns the chosen experiment."""
    from qlora_sentiment.core.io import write_json, write_text

    experiments = parse_exp_show(show)
    chosen = best(experiments, metric)
    out = Path(out)
    plot(experiments, metric, chosen, out / "compare.png")
    write_text(out / "compare.md", f"# Experiments by `{metric}`\n\nBest: **{chosen.name}** (`{chosen.rev[:7]}`), "
               f"{metric.split(':')[1]} = {chosen.metrics[metric]:.4f}. "
               f"Apply it with `dvc exp apply {chosen.name}`.\n\n"
               + table(experiments, metric, chosen) + "\n![comparison](compare.png)\n")
    write_json(out / "best.json", {"name": chosen.name, "rev": chosen.rev, "metric": metric,
                                   "value": chosen.metrics[metric],
                                   "params": {k: chosen.params.get(k) for k in varying_params(experiments)}})
    return chosen
