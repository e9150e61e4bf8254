"""The short Markdown summary a reviewer reads: headline with intervals, baseline vs fine-tuned, errors."""

from __future__ import annotations

import numpy as np


def before_after_ids(ids: list, seed: int, k: int = 8) -> list:
    """A fixed sample of test ids: depends on the split and seed only, so every experiment shows the same ones."""
    ordered = sorted(ids, key=str)
    rng = np.random.default_rng(seed)
    return [ordered[i] for i in sorted(rng.choice(len(ordered), size=min(k, len(ordered)), replace=False))]


def _clip(text: str, width: int = 110) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _review(row: dict) -> str:
    """The review cell: an aspect example names its aspect first."""
    return f"**{_clip(row['aspect'], 40)}**: {_clip(row['text'])}" if "aspect" in row else _clip(row["text"])


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _aspect_lines(aspects: dict | None) -> list[str]:
    """Error rates of the aspect tasks: by whether a sentence's aspects agree, and by the aspect's train count."""
    if not aspects:
        return []
    lines = ["", "## Error rates by aspect", "", "| examples | n | error rate |", "|---|---|---|"]
    for group in ("sentences", "aspect_frequency"):
        for name, r in aspects.get(group, {}).items():
            lines.append(f"| {name} | {r['n']} | {'–' if r['error_rate'] is None else _pct(r['error_rate'])} |")
    return lines


def summary_markdown(metrics: dict, baseline: dict, errors: dict, mistakes: list[dict],
                     examples: list[dict], top: int = 10) -> str:
    ci = metrics["ci95"]
    cmp = metrics["baseline"]
    test = cmp["mcnemar"]
    lines = [
        "# Evaluation summary",
        "",
        f"Test examples: **{metrics['n']}**. Fine-tuned accuracy **{_pct(metrics['accuracy'])}** "
        f"(95 % bootstrap interval {_pct(ci['accuracy']['low'])} – {_pct(ci['accuracy']['high'])}), macro F1 "
        f"**{metrics['macro']['f1']:.3f}** ({ci['macro_f1']['low']:.3f} – {ci['macro_f1']['high']:.3f}).",
        "",
        "| metric | baseline (untuned) | fine-tuned | change |",
        "|---|---|---|---|",
    ]
    for key, base_value in cmp["metrics"].items():
        tuned_value = base_value + cmp["delta"][key]
        lines.append(f"| {key} | {base_value:.4f} | {tuned_value:.4f} | {cmp['delta'][key]:+.4f} |")
    for key in ("ece", "brier"):
        t, b = metrics["calibration"][key], baseline["calibration"][key]
        lines.append(f"| {key} (calibration) | {b:.4f} | {t:.4f} | {t - b:+.4f} |")
    verdict = "significant" if test["significant"] else "not significant"
    lines += [
        "",
        f"McNemar's exact test: {test['only_finetuned_correct']} examples only the fine-tuned model gets right, "
        f"{test['only_baseline_correct']} only the baseline; p = {test['p_value']:.3g} ({verdict} at "
        f"α = {test['alpha']}).",
        "",
        "## Error rates by cue",
        "",
        "| cue | with: n | with: error rate | without: n | without: error rate |",
        "|---|---|---|---|---|",
    ]
    for name, row in errors["cues"].items():
        w, wo = row["with"], row["without"]
        rate = lambda r: "–" if r["error_rate"] is None else _pct(r["error_rate"])  # noqa: E731
        lines.append(f"| {name} | {w['n']} | {rate(w)} | {wo['n']} | {rate(wo)} |")
    lines += ["", "| length quartile | words | n | error rate |", "|---|---|---|---|"]
    for q in errors.get("length_quartiles", []):
        rate = "–" if q["error_rate"] is None else _pct(q["error_rate"])
        lines.append(f"| {q['quartile']} | {q['words'][0]}–{q['words'][1]} | {q['n']} | {rate} |")
    lines += _aspect_lines(errors.get("aspects"))
    lines += ["", f"## Most confident mistakes (top {min(top, len(mistakes))} of {len(mistakes)})", "",
              "| true | predicted | confidence | review |", "|---|---|---|---|"]
    for m in mistakes[:top]:
        lines.append(f"| {m['label']} | {m['predicted']} | {m['confidence']:.3f} | {_review(m)} |")
    lines += ["", "## Before / after (a fixed sample of test reviews)", "",
              "| true | baseline | fine-tuned | review |", "|---|---|---|---|"]
    for e in examples:
        lines.append(f"| {e['label']} | {e['baseline']} ({e['baseline_confidence']:.2f}) | "
                     f"{e['finetuned']} ({e['finetuned_confidence']:.2f}) | {_review(e)} |")
    return "\n".join(lines) + "\n"
