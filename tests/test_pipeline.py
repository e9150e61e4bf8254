"""The real pipeline in a temporary git repo: dvc repro, no-op repro, dvc exp run -S, dvc metrics diff."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from helpers import make_project, run

DECLARED_OUTPUTS = [
    "models/base/base_model.json", "data/prepared/train.jsonl", "data/prepared/validation.jsonl",
    "data/prepared/test.jsonl", "data/prepared/report.json", "plots/data/train.png", "plots/data/test.png",
    "models/adapter/adapter_model.safetensors",
    "models/adapter/adapter_config.json", "models/adapter/qlora_sentiment.json", "models/adapter/tokenizer.json",
    "metrics/train/metrics.json", "metrics/train/plots/metrics/train/loss.tsv", "metrics/metrics.json",
    "metrics/train/environment.json",
    "metrics/predictions.jsonl", "plots/confusion.json", "plots/confusion_matrix.png",
    "metrics/baseline.json", "metrics/baseline_predictions.jsonl", "plots/calibration/baseline.json",
    "plots/calibration/finetuned.json", "plots/roc/positive.json", "plots/precision_recall/positive.json",
    "plots/roc.png", "plots/precision_recall.png", "plots/calibration.png", "metrics/error_analysis.json",
    "metrics/mistakes.csv", "metrics/evaluation.md", "models/export/config.json", "models/export/model.safetensors",
    "models/export/README.md", "models/export/qlora_sentiment.json",
]
# Every plot dvc.yaml declares, as `dvc plots diff` names it in the page: vega plots by div id, images by file.
DECLARED_VEGA_PLOTS = [
    "plots_confusion_json", "confusion_normalized", "plots_roc_positive_json", "plots_precision_recall_positive_json",
    "reliability",
    "metrics_train_plots_metrics_train_loss_tsv", "metrics_train_plots_metrics_eval_loss_tsv",
    "metrics_train_plots_metrics_eval_accuracy_tsv",
]
DECLARED_IMAGES = ["plots_confusion_matrix.png", "plots_roc.png", "plots_precision_recall.png", "plots_calibration.png",
                   "plots_data_train.png", "plots_data_validation.png", "plots_data_test.png"]


@pytest.mark.slow
def test_repro_noop_experiment_and_metrics_diff(reproduced_project):
    repo, env = reproduced_project  # `dvc repro` of the tiny project, committed (conftest.reproduced), copied here
    for path in DECLARED_OUTPUTS:
        assert (repo / path).is_file(), f"missing output {path}"
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    assert metrics["n"] == 32 and set(metrics["per_class"]) == {"negative", "positive"}
    assert {"accuracy", "macro", "weighted", "roc_auc", "calibration", "ci95", "baseline"} <= set(metrics)
    baseline = json.loads((repo / "metrics/baseline.json").read_text())
    assert metrics["baseline"]["delta"]["accuracy"] == pytest.approx(metrics["accuracy"] - baseline["accuracy"])
    assert 0 <= metrics["baseline"]["mcnemar"]["p_value"] <= 1
    rows = json.loads((repo / "plots/confusion.json").read_text())
    assert len(rows) == 32 and set(rows[0]) == {"actual", "predicted"}
    assert (repo / "plots/confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Training curves: only those that inform (loss per logged step; validation loss and accuracy at several steps).
    curves = repo / "metrics/train/plots/metrics"
    assert sorted(p.relative_to(curves).as_posix() for p in curves.rglob("*.tsv")) == \
        ["eval/accuracy.tsv", "eval/loss.tsv", "train/loss.tsv"]
    assert len((curves / "eval/accuracy.tsv").read_text().splitlines()) - 1 >= 4
    # Training time: beside the curves, ignored by git and declared by no stage (it changes every run)...
    timing = json.loads((repo / "metrics/train/timing.json").read_text())
    assert timing["training_seconds"] > 0 and timing["reviews_per_second"] > 0
    assert "timing.json" not in run(["git", "status", "--porcelain", "--ignored=no"], repo, env).stdout
    # ...and the summary `make run` ends with says it.
    summary = run(["qlora-sentiment", "summary"], repo, env).stdout
    assert "reviews/s" in summary and len(summary.splitlines()) <= 12, summary

    # Nothing changed: no stage runs.
    again = run(["dvc", "repro"], repo, env)
    assert "Running stage" not in again.stdout, again.stdout
    status = run(["dvc", "status"], repo, env)
    assert "up to date" in status.stdout

    exp = run(["dvc", "exp", "run", "-S", "train.learning_rate=0.02"], repo, env)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'evaluate'" in exp.stdout
    for untouched in ("prepare", "base_model", "baseline"):
        assert f"Running stage '{untouched}'" not in exp.stdout, exp.stdout
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo, env).stdout)
    changed = {f"{path}:{key}" for path, values in diff.items() for key, value in values.items() if value.get("diff")}
    assert "metrics/train/metrics.json:train.loss" in changed, diff
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], repo, env).stdout)
    change = params_diff["params.yaml"]["train.learning_rate"]
    assert (change["old"], change["new"]) == (0.005, 0.02)

    # The two experiments' plots side by side (the committed run and the new one), drawn offline.
    names = run(["dvc", "exp", "list", "--name-only"], repo, env).stdout.split()
    assert len(names) == 1, names
    page = repo / "plots_html"
    run(["dvc", "plots", "diff", "HEAD", names[0], "-o", str(page)], repo, env)
    check_offline_plots_page(page / "index.html", ["HEAD", names[0]])


def check_offline_plots_page(index, revisions):
    html = index.read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html and "<script src=" not in html, "the page would load scripts from the internet"
    assert "vegaEmbed" in html and "vega-lite" in html  # inlined by assets/dvc_plots_offline.html
    for plot in DECLARED_VEGA_PLOTS:
        assert f'<div id = "{plot}"' in html, f"plot {plot} missing from the page"
    for image in DECLARED_IMAGES:
        for rev in revisions:
            assert f'src="static/{rev}_{image}"' in html and (index.parent / "static" / f"{rev}_{image}").is_file()
    vega_plots = html.count("vegaEmbed('#")
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium to check the plots page (make test installs it)")
        pytest.skip("no chromium here (make test installs Debian's chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=15000", "--window-size=1400,6000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", index.as_uri()], capture_output=True, text=True,
                         timeout=180).stdout
    # vega-embed replaces each plot's script with a drawn canvas once vega has parsed and rendered the spec.
    drawn = len(re.findall(r'<canvas[^>]*class="marks"', dom))
    assert drawn >= vega_plots, f"only {drawn} vega plots drawn, expected {vega_plots}"
    shot = index.parent / "screenshot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", index.as_uri()], capture_output=True, timeout=180)
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    ink = sum(pixels.histogram()[:200])  # pixels clearly darker than the white page
    assert ink > 0.01 * pixels.width * pixels.height, "the screenshot is a blank page"


@pytest.mark.slow
def test_two_fresh_runs_give_identical_results(reproduced, tmp_path, tiny_llama, python_bin_env):
    """Reproducibility is the product: same params, two clean checkouts, byte-identical weights and metrics. The
    first run is the session's shared one (conftest.reproduced, made in another folder, maybe by another worker)."""
    repos = [reproduced, make_project(tmp_path / "second", tiny_llama, python_bin_env)]
    # The second run without HF_HUB_OFFLINE: outputs must not depend on how the hub client was set up.
    online_env = {k: v for k, v in python_bin_env.items() if k != "HF_HUB_OFFLINE"}
    run(["dvc", "repro"], repos[1], online_env)
    assert (repos[0] / "dvc.lock").read_text() == (repos[1] / "dvc.lock").read_text()
    for path in ("models/adapter/adapter_model.safetensors", "models/adapter/tokenizer_config.json",
                 "models/adapter/qlora_sentiment.json", "metrics/metrics.json", "metrics/predictions.jsonl",
                 "metrics/baseline.json", "metrics/train/metrics.json", "data/prepared/train.jsonl",
                 "data/prepared/report.json", "plots/data/train.png",
                 "models/export/model.safetensors", "plots/confusion_matrix.png"):
        assert (repos[0] / path).read_bytes() == (repos[1] / path).read_bytes(), f"{path} differs between runs"
    # The environment that produced them is recorded with the adapter.
    environment = json.loads((repos[0] / "metrics/train/environment.json").read_text())
    assert {"python", "packages", "device"} <= set(environment) and environment["packages"]["torch"], environment


@pytest.mark.slow
def test_bad_params_fail_with_one_line_and_no_outputs(project):
    repo, env = project
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["learnig_rate"] = 1e-4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["python", "stages/prepare.py", "--out", "data/prepared", "--report", "data/prepared/report.json",
                  "--images", "plots/data"], repo, env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params: unknown key 'train.learnig_rate'; did you mean 'learning_rate'?"
    assert not (repo / "data/prepared").exists() and not (repo / "plots/data").exists()


def test_local_data_file_is_a_dependency_of_prepare(tmp_path, tiny_llama, python_bin_env):
    """The user's own CSV lives in data/raw/ (a prepare dep): editing it makes `dvc status` name prepare, and
    `dvc repro` re-runs it with the new rows."""
    env = python_bin_env
    repo = tmp_path / "project"
    rows = "".join(f"the film was {'great' if i % 2 else 'awful'} {i},{'positive' if i % 2 else 'negative'}\n"
                   for i in range(60))
    raw = repo / "data/raw/reviews.csv"
    repo.mkdir()
    raw.parent.mkdir(parents=True)
    raw.write_text("text,label\n" + rows)
    make_project(repo, tiny_llama, env, **{"data.source": "local", "data.name": "data/raw/reviews.csv",
                                           "data.label_column": "label", "data.group_column": None})
    run(["dvc", "repro", "prepare"], repo, env)
    assert "up to date" in run(["dvc", "status", "prepare"], repo, env).stdout
    before = json.loads((repo / "data/prepared/report.json").read_text())

    with raw.open("a") as handle:
        handle.write("".join(f"an extra {'fine' if i % 2 else 'dull'} movie {i},{'positive' if i % 2 else 'negative'}\n"
                             for i in range(20)))
    status = run(["dvc", "status"], repo, env).stdout
    assert "prepare:" in status and "data/raw" in status, status
    again = run(["dvc", "repro", "prepare"], repo, env)
    assert "Running stage 'prepare'" in again.stdout, again.stdout
    after = json.loads((repo / "data/prepared/report.json").read_text())
    assert sum(after["rows_read"].values()) == sum(before["rows_read"].values()) + 20


def test_bad_params_before_dvc_and_the_one_line_recovery(project):
    """`qlora-sentiment check` (make run's first step) stops bad params before DVC removes any output. Run
    straight through `dvc repro`, DVC deletes a stage's outputs before the stage fails: the git-tracked ones
    come back with `git checkout`, the cached ones with `dvc checkout` (docs/troubleshooting.md)."""
    repo, env = project
    run(["dvc", "repro", "prepare"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "prepared"], repo, env)
    tracked = ["data/prepared/report.json", "plots/data/train.png"]
    good = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(good.replace("test: 0.1", "test: 0.5"))  # the split no longer sums to 1

    check = run(["qlora-sentiment", "check"], repo, env, check=False)
    assert check.returncode == 2, check.stderr
    assert check.stderr.strip() == "error: params: data.split: train + validation + test must sum to 1 (got 1.4)"
    assert all((repo / path).is_file() for path in tracked)

    failed = run(["dvc", "repro", "prepare"], repo, env, check=False)
    assert failed.returncode != 0 and "must sum to 1" in failed.stderr, failed.stderr[-2000:]
    assert not any((repo / path).exists() for path in tracked)  # DVC removed them before the stage ran
    (repo / "params.yaml").write_text(good)
    run(["git", "checkout", "--", "data/prepared/report.json", "plots/data"], repo, env)
    run(["dvc", "checkout", "prepare"], repo, env)
    assert "up to date" in run(["dvc", "status", "prepare"], repo, env).stdout
