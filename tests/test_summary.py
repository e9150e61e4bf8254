"""`qlora-sentiment summary` (the end of `make run`): a few short lines from the committed metrics, the training
time only when it belongs to the adapter in the folder, and one `error:` line before any run."""

import json
import shutil

from helpers import ROOT, cli
from qlora_sentiment.experiments.summary import WIDTH, summary_lines
from qlora_sentiment.training.outputs import adapter_digest


def project(tmp_path, adapter_bytes=b"weights"):
    """The committed metrics/ of the default run and a stand-in adapter."""
    for name in ("metrics/metrics.json", "metrics/train/environment.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    adapter = tmp_path / "models/adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(adapter_bytes)
    (adapter / "qlora_sentiment.json").write_text(json.dumps({"head": "classifier",
                                                              "base_model": {"name": "gemma3-270m"}}))
    return tmp_path


def timing(root, digest):
    (root / "metrics/train/timing.json").write_text(json.dumps({
        "adapter_sha256": digest, "training_seconds": 442.4, "reviews_per_second": 6.78,
        "validation_curve_seconds": 23.0, "stage_seconds": 480.2}))


def test_summary_is_short_and_says_what_matters(tmp_path):
    root = project(tmp_path)
    timing(root, adapter_digest(root / "models/adapter"))
    lines = summary_lines(root)
    text = "\n".join(lines)
    assert len(lines) <= 12 and max(len(line) for line in lines) <= WIDTH, text
    metrics = json.loads((ROOT / "metrics/metrics.json").read_text())
    environment = json.loads((ROOT / "metrics/train/environment.json").read_text())
    accuracy, ci = metrics["accuracy"], metrics["ci95"]["accuracy"]
    assert f"{100 * accuracy:.1f} %" in text and f"{100 * ci['low']:.1f}–{100 * ci['high']:.1f} %" in text
    assert f"{metrics['macro']['f1']:.3f}" in text and f"{metrics['ci95']['macro_f1']['low']:.3f}" in text
    assert f"{100 * metrics['baseline']['metrics']['accuracy']:.1f} %" in text
    assert f"McNemar p = {metrics['baseline']['mcnemar']['p_value']:.2g}" in text
    assert "442 s, 6.8 reviews/s" in text
    assert environment["compute_dtype"] in text and environment["cpu_capability"] in text
    assert f"{environment['cpu_matmul']} matmul" in text  # the committed run's library (runtime.cpu_matmul)
    assert "gemma3-270m" in text
    assert "metrics/evaluation.md" in text and "dvc plots show" in text and "docs/" in text


def test_training_time_only_for_the_adapter_it_timed(tmp_path):
    root = project(tmp_path)
    text = "\n".join(summary_lines(root))  # no timing.json: restored from the DVC cache, or trained elsewhere
    assert "not measured here" in text and "timing.json" in text and "reviews/s" not in text
    timing(root, "0" * 64)  # an earlier run's timing beside an adapter the cache brought back
    text = "\n".join(summary_lines(root))
    assert "not measured for this adapter" in text and "reviews/s" not in text


def test_summary_cli_before_any_run_is_one_error_line(tmp_path):
    out = cli("summary", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("error: metrics/metrics.json: not found; run `dvc repro` (or `make run`) in the "
                                  "project folder to produce it")
    project(tmp_path)
    out = cli("summary", cwd=tmp_path)
    assert out.returncode == 0 and "accuracy" in out.stdout, out.stderr
