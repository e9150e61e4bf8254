"""The real pipeline in a temporary git repo: dvc repro, no-op repro, bad params. (A second fresh run, killed in
training and resumed, byte for byte: tests/test_resume.py; an experiment's `dvc exp run -S`, `dvc metrics diff`,
`dvc params diff` and `dvc plots diff`: tests/test_experiments.py.)"""

import json

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


@pytest.mark.slow
def test_repro_outputs_and_a_noop_repro(reproduced_project):
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
