"""The real pipeline in a temporary git repo: dvc repro, no-op repro, dvc exp run -S, dvc metrics diff."""

import json
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, tiny_params

PROJECT_FILES = ["dvc.yaml", "stages", "src", ".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore"]


def run(cmd, cwd, env, check=True):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture()
def project(tmp_path, tiny_llama, python_bin_env):
    repo = tmp_path / "project"
    repo.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif source.exists():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_llama), sort_keys=False))
    env = python_bin_env
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny project"], repo, env)
    return repo, env


DECLARED_OUTPUTS = [
    "models/base/base_model.json", "data/prepared/train.jsonl", "data/prepared/validation.jsonl",
    "data/prepared/test.jsonl", "metrics/data.json", "models/adapter/adapter_model.safetensors",
    "models/adapter/adapter_config.json", "models/adapter/qlora_sentiment.json", "models/adapter/tokenizer.json",
    "metrics/train/metrics.json", "metrics/train/plots/metrics/train/loss.tsv", "metrics/metrics.json",
    "metrics/predictions.jsonl", "plots/confusion.json", "plots/confusion_matrix.png",
]


@pytest.mark.slow
def test_repro_noop_experiment_and_metrics_diff(project):
    repo, env = project
    run(["dvc", "repro"], repo, env)
    for path in DECLARED_OUTPUTS:
        assert (repo / path).is_file(), f"missing output {path}"
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    assert metrics["n"] == 32 and set(metrics["per_class"]) == {"negative", "positive"}
    assert {"accuracy", "macro", "weighted", "roc_auc"} <= set(metrics)
    rows = json.loads((repo / "plots/confusion.json").read_text())
    assert len(rows) == 32 and set(rows[0]) == {"actual", "predicted"}
    assert (repo / "plots/confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Nothing changed: no stage runs.
    again = run(["dvc", "repro"], repo, env)
    assert "Running stage" not in again.stdout, again.stdout
    status = run(["dvc", "status"], repo, env)
    assert "up to date" in status.stdout

    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "baseline run"], repo, env)
    exp = run(["dvc", "exp", "run", "-S", "train.learning_rate=0.02"], repo, env)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'evaluate'" in exp.stdout
    assert "Running stage 'prepare'" not in exp.stdout and "Running stage 'base_model'" not in exp.stdout
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo, env).stdout)
    changed = {f"{path}:{key}" for path, values in diff.items() for key, value in values.items() if value.get("diff")}
    assert "metrics/train/metrics.json:train.loss" in changed, diff
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], repo, env).stdout)
    change = params_diff["params.yaml"]["train.learning_rate"]
    assert (change["old"], change["new"]) == (0.005, 0.02)


@pytest.mark.slow
def test_bad_params_fail_with_one_line_and_no_outputs(project):
    repo, env = project
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["learnig_rate"] = 1e-4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["python", "stages/prepare.py", "--out", "data/prepared", "--stats", "metrics/data.json"], repo, env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params: unknown key 'train.learnig_rate'; did you mean 'learning_rate'?"
    assert not (repo / "data/prepared").exists() and not (repo / "metrics/data.json").exists()
