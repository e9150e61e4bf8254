"""Experiments the way a team uses them, in a temporary git repo with the tiny model: a hyper-parameter search
through DVC's queue, what one experiment re-ran and its metrics / params / plots diffs against the commit,
`qlora-sentiment compare` picking the best by validation macro F1, a PR report of two commits that differ in a
parameter, and sharing results through a DVC remote."""

import json
import re
import shutil
import time

import pytest
import yaml

from helpers import ROOT, TINY_MODEL, check_offline_plots_page, make_project, repro_in_process, run

SELECT = "metrics/train/metrics.json"


def validation_f1(repo, rev, env):
    return json.loads(run(["git", "show", f"{rev}:{SELECT}"], repo, env).stdout)["validation"]["macro_f1"]


def wait_for_queue(repo, env, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo, env).stdout
        if not any(state in status for state in ("Queued", "Running")):
            return status
        time.sleep(10)  # each `dvc queue status` costs a second of CPU that the queued run could use
    run(["dvc", "queue", "kill", "--all"], repo, env, check=False)
    pytest.fail(f"the queue did not finish in {timeout} s:\n{status}")


@pytest.mark.slow
def test_queue_search_compare_report_and_remote(tmp_path, reproduced_project):
    repo, env = reproduced_project  # `dvc repro` of the tiny project, committed as "baseline run"

    # Search: two learning rates queued with one -S (a Hydra sweep) up to evaluate (a candidate is not exported),
    # run by a queue worker.
    run(["dvc", "exp", "run", "--queue", "evaluate", "-S", "train.learning_rate=0.001,0.02"], repo, env)
    assert run(["dvc", "queue", "status"], repo, env).stdout.count("Queued") == 2
    try:
        run(["dvc", "queue", "start", "-j", "1"], repo, env)
        status = wait_for_queue(repo, env)
    finally:
        run(["dvc", "queue", "stop", "--kill"], repo, env, check=False)
    assert status.count("Success") == 2, status

    # compare: the best of the baseline and both experiments by validation macro F1, from dvc exp show --json.
    run(["qlora-sentiment", "compare", "--out", "reports/compare"], repo, env)
    best = json.loads((repo / "reports/compare/best.json").read_text())
    show = json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout)
    revs = [s["rev"] for base in show if base["rev"] != "workspace"
            for s in [base, *(r for rng in base.get("experiments") or [] for r in rng["revs"])]]
    assert len(revs) == 3
    scores = {rev: validation_f1(repo, rev, env) for rev in revs}
    assert best["value"] == pytest.approx(max(scores.values()))
    assert scores[best["rev"]] == max(scores.values())
    assert set(best["params"]) == {"train.learning_rate"}
    table = (repo / "reports/compare/compare.md").read_text()
    assert table.count("| success |") == 2 and "| baseline |" in table and "(best)" in table
    assert (repo / "reports/compare/compare.png").read_bytes()[:4] == b"\x89PNG"

    # One experiment against the commit it started from: it re-ran only what reads the learning rate (its log in
    # the queue), and `dvc metrics diff`, `dvc params diff` and `dvc plots diff` (drawn offline) show the change.
    name = next(e["name"] for base in show for rng in base.get("experiments") or [] for e in rng["revs"]
                if yaml.safe_load(run(["git", "show", f"{e['rev']}:params.yaml"], repo, env).stdout)["train"]
                ["learning_rate"] == 0.02)
    log = run(["dvc", "queue", "logs", name], repo, env).stdout
    assert "Running stage 'train'" in log and "Running stage 'evaluate'" in log, log[-3000:]
    for untouched in ("prepare", "base_model", "baseline", "export"):
        assert f"Running stage '{untouched}'" not in log, log[-3000:]
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", name, "--json"], repo, env).stdout)
    changed = {f"{path}:{key}" for path, values in diff.items() for key, value in values.items() if value.get("diff")}
    assert "metrics/train/metrics.json:train.loss" in changed, diff
    change = json.loads(run(["dvc", "params", "diff", "HEAD", name, "--json"], repo, env).stdout)
    assert (change["params.yaml"]["train.learning_rate"]["old"], change["params.yaml"]["train.learning_rate"]["new"]) \
        == (0.005, 0.02)
    page = tmp_path / "plots_html"
    run(["dvc", "plots", "diff", "HEAD", name, "-o", str(page)], repo, env)
    check_offline_plots_page(page / "index.html", ["HEAD", name])

    # A pull request: the chosen learning rate committed on top of the baseline, reported against it.
    lr_exp = next(rev for rev in revs if rev != revs[0])
    run(["dvc", "exp", "apply", lr_exp], repo, env)
    exported = run(["dvc", "repro"], repo, env).stdout  # the chosen one, and only it, is exported
    assert exported.count("Running stage") == 1 and "Running stage 'export'" in exported, exported
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "new learning rate"], repo, env)
    run(["qlora-sentiment", "pr-report", "HEAD~1", "HEAD", "--out", "reports/pr"], repo, env)
    report = (repo / "reports/pr/report.md").read_text()
    assert re.search(r"\| params.yaml \| train.learning_rate \| 0.005 +\| (0.001|0.02) +\|", report), report
    assert "metrics/metrics.json" in report and "accuracy" in report
    images = sorted((repo / "reports/pr").glob("confusion_*.png"))
    assert [p.name for p in images] == ["confusion_base_HEAD-1.png", "confusion_head_HEAD.png"]
    for image, rev in zip(images, ("HEAD~1", "HEAD")):
        committed = run(["git", "show", f"{rev}:plots/confusion_matrix.png"], repo, env, text=False).stdout
        assert image.read_bytes() == committed and f"]({image.name})" in report

    # Sharing: push to a local-directory remote; a fresh clone pulls the adapter and metrics without training.
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], repo, env)
    run(["git", "commit", "-qam", "add the team's remote"], repo, env)
    run(["dvc", "push"], repo, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    run(["dvc", "pull"], clone, env)
    adapter = "models/adapter/adapter_model.safetensors"
    assert (clone / adapter).read_bytes() == (repo / adapter).read_bytes()
    # The merged export travels too (a rented GPU's 7B export must outlive its machine): nothing to re-run.
    export = "models/export/model.safetensors"
    assert (clone / export).read_bytes() == (repo / export).read_bytes()
    assert "up to date" in run(["dvc", "status"], clone, env).stdout
    assert "Running stage" not in run(["dvc", "repro"], clone, env).stdout
    assert run(["dvc", "metrics", "diff", "HEAD"], clone, env).stdout.strip() == ""

    # The model registry: the adapter is a DVC artifact; a version is a git tag (what `gto register` writes),
    # and `dvc artifacts get` fetches it from the project's remote into any folder, no clone needed.
    run(["git", "tag", "-a", "sentiment-adapter@v0.1.0", "-m", "Registering artifact sentiment-adapter version 0.1.0"],
        repo, env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(["dvc", "artifacts", "get", str(repo), "sentiment-adapter"], elsewhere, env)
    got = elsewhere / "adapter"
    assert (got / "adapter_model.safetensors").read_bytes() == (repo / adapter).read_bytes()
    from qlora_sentiment.model.adapter import load_scorer

    scorer = load_scorer(got, repo / "models/base")  # what it got loads and scores as the original does
    original = load_scorer(repo / "models/adapter", repo / "models/base")
    texts = ["a warm, funny film", "a joyless, overlong mess"]
    assert (scorer.predict_proba(texts) == original.predict_proba(texts)).all()
    shutil.rmtree(remote)


@pytest.mark.slow
def test_three_class_preset_end_to_end(tmp_path, tiny_llama, python_bin_env):
    """`experiment=tweets_3class` through the project's real conf/, every stage of dvc.yaml on the tiny model
    (helpers.repro_in_process: what `dvc exp run -S experiment=tweets_3class` runs)."""
    repo = make_project(tmp_path / "project", tiny_llama, python_bin_env)
    shutil.rmtree(repo / "conf")
    shutil.copytree(ROOT / "conf", repo / "conf")
    tiny = ["model.source=local", f"model.name={TINY_MODEL}", "runtime.torch_threads=1", "lora.last_n_layers=1",
            "data.max_train=96", "data.max_validation=24", "data.max_test=60", "train.max_steps=4",
            "train.warmup_steps=0", "train.max_length=96", "train.save_steps=4", "eval.batch_size=16"]
    repro_in_process(repo, ["experiment=tweets_3class", *tiny])
    labels = ["negative", "neutral", "positive"]
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    assert list(metrics["per_class"]) == labels and metrics["n"] == 60
    confusion = json.loads((repo / "plots/confusion.json").read_text())
    assert {(r["actual"], r["predicted"]) for r in confusion} <= {(a, b) for a in labels for b in labels}
    assert {r["actual"] for r in confusion} == set(labels)
    report = json.loads((repo / "data/prepared/report.json").read_text())
    assert report["dropped"]["low_confidence"] > 0 and set(report["test"]["labels"]) == set(labels)
    assert all((repo / f"plots/roc/{label}.json").is_file() for label in labels)
