"""The triggers of the catalogue's `predict` output and resume rows, for tests/test_bad_inputs.py:
`output_problem` for the rows refused before a model loads (a stand-in model folder is enough),
`trained_output_problem` for those that need a real one (the session's tiny trained model). Below them, what
tests/test_labelling.py and tests/test_predict_output.py share: the real command in this process, a run started
in the background and watched, and `reviews`, an input of LINES reviews with its uninterrupted run's CSV (made once
a session)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

from helpers import CLI
from qlora_sentiment.labelling.output import model_fingerprint


def model_args(trained):
    return ["--model", str(trained / "adapter"), "--base", str(trained / "base"), "--threads", "1"]


def stand_in_model(folder):
    """An adapter folder that passes every check made before a model loads (record, weights file), for the
    catalogue's resume errors, which come before loading."""
    from qlora_sentiment.model.record import ModelRecord, write_record

    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"stand-in weights")
    write_record(folder, ModelRecord.model_validate({
        "head": "classifier", "labels": ["negative", "positive"], "prompt_template": "Review: {text}",
        "chat_template": False, "max_length": 64,
        "quantization": {"load_in_4bit": True, "quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"},
        "base_model": {"source": "local", "name": "models/local/tiny"}, "optimizer": {"requested": "adamw_torch",
                                                                                       "used": "adamw_torch"},
        "device": "cpu", "trainable_parameters": 1, "total_parameters": 2, "global_step": 1, "processes": 1,
        "train_loss": None, "eval_loss": None, "validation": {}}))
    return folder


OUTPUT_PROBLEMS = ("predict-resume-without-output", "predict-output-is-folder", "predict-output-no-folder",
                   "predict-output-not-a-file", "predict-output-is-input", "predict-output-unwritable",
                   "predict-resume-other-model", "predict-resume-other-input", "predict-resume-other-format",
                   "predict-resume-no-record", "predict-resume-output-changed", "predict-output-busy",
                   "predict-resume-bad-record", "predict-resume-rows-mismatch", "predict-resume-complete-partial",
                   "predict-duplicate-key", "predict-output-lock-unmade", "predict-output-lock-foreign",
                   "predict-output-lock-is-input")
# a process holding FILE's lock as a running predict does (flock on .FILE.predict-lock, its pid inside)
HOLDER = ("import fcntl, os, sys, time\n"
          "fd = os.open('.out.jsonl.predict-lock', os.O_RDWR | os.O_CREAT)\n"
          "fcntl.flock(fd, fcntl.LOCK_EX)\n"
          "os.write(fd, b'%d\\n' % os.getpid())\n"
          "print('locked', flush=True)\n"
          "time.sleep(120)\n")


def output_problem(problem_id, tmp, run):
    """tests/test_bad_inputs.py's trigger for the catalogue rows above: `run(argv, cwd)` runs the command."""
    (tmp / "in.txt").write_text("a fine film\na dull one\n")
    base = [CLI, "predict", "--file", "in.txt"]
    simple = {"predict-resume-without-output": [*base, "--model", "no-model", "--resume"],
              "predict-output-is-folder": [*base, "--model", "no-model", "--output", "."],
              "predict-output-no-folder": [*base, "--model", "no-model", "--output", "missing/out.jsonl"],
              "predict-output-not-a-file": [*base, "--model", "no-model", "--output", "/dev/null"],
              "predict-output-is-input": [*base, "--model", "no-model", "--output", "in.txt"],
              "predict-output-unwritable": [*base, "--model", "no-model", "--output", "o" * 300 + ".jsonl"],
              "predict-duplicate-key": [CLI, "predict", "--model", "no-model", "--file", "in.jsonl"],
              "predict-output-lock-unmade": [*base, "--model", "no-model", "--output", "out.jsonl"],
              "predict-output-lock-foreign": [*base, "--model", "no-model", "--output", "out.jsonl"],
              "predict-output-lock-is-input": [CLI, "predict", "--file", ".out.jsonl.predict-lock", "--model", "no-model",
                                               "--output", "out.jsonl"]}
    (tmp / "in.jsonl").write_text('{"text": "a", "text": "b"}\n')
    if problem_id == "predict-output-lock-unmade":  # where the lock file goes, a folder: fails for root too
        (tmp / ".out.jsonl.predict-lock").mkdir()
    if problem_id == "predict-output-lock-foreign":  # someone's file of that name: never truncated or removed
        (tmp / ".out.jsonl.predict-lock").write_text("my notes\n")
    if problem_id == "predict-output-lock-is-input":
        (tmp / ".out.jsonl.predict-lock").write_text("a review\n")
    if problem_id in simple:
        result = run(simple[problem_id], tmp)
        if problem_id in ("predict-output-lock-foreign", "predict-output-lock-is-input"):
            assert (tmp / ".out.jsonl.predict-lock").read_text() in ("my notes\n", "a review\n"), "a user's file changed"
        return result
    (tmp / "out.jsonl").write_text('{"text": "a fine film"}\n')
    if problem_id == "predict-output-busy":
        holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=tmp, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline() == "locked\n"
            result = run([*base, "--model", "no-model", "--output", "out.jsonl"], tmp)
        finally:
            holder.kill()
            holder.wait()
        assert f"(pid {holder.pid})" in result.stderr, result.stderr
        assert (tmp / "out.jsonl").read_text() == '{"text": "a fine film"}\n', "a refused run changed the output"
        return result
    model = stand_in_model(tmp / "adapter")
    record = {"version": 1, "model": {"path": "adapter", "sha256": model_fingerprint(model)},
              "input": {"name": "in.txt", "sha256": hashlib.sha256((tmp / "in.txt").read_bytes()).hexdigest(),
                        "rows": 2},
              "format": "json", "text_column": None, "raw_csv": False, "batch_size": 16, "threads": None,
              "rows_written": 1, "bytes_written": 24, "complete": False,
              "output_sha256": hashlib.sha256(b'{"text": "a fine film"}\n').hexdigest()}
    change = {"predict-resume-other-model": {"model": {"path": "elsewhere", "sha256": "0" * 64}},
              "predict-resume-other-input": {"input": {"name": "old.txt", "sha256": "0" * 64, "rows": 2}},
              "predict-resume-other-format": {"format": "csv"},
              "predict-resume-output-changed": {"output_sha256": "0" * 64},
              "predict-resume-bad-record": {"rows_written": "10"},
              "predict-resume-rows-mismatch": {"rows_written": 2},
              "predict-resume-complete-partial": {"complete": True}}
    if problem_id != "predict-resume-no-record":
        (tmp / "out.jsonl.progress.json").write_text(json.dumps({**record, **change[problem_id]}))
    result = run([*base, "--model", "adapter", "--output", "out.jsonl", "--resume"], tmp)
    assert (tmp / "out.jsonl").read_text() == '{"text": "a fine film"}\n', "a refused resume changed the output"
    return result


FULL_RECORD = """import errno, os, sys
real, records = os.replace, []
def replace(source, target, *args, **kwargs):  # the disk is full from the second record on
    records.append(target) if str(target).endswith(".progress.json") else None
    if len(records) > 1 and str(target).endswith(".progress.json"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(source, target, *args, **kwargs)
os.replace = replace
from qlora_sentiment.cli import main
main(sys.argv[1:])
"""
# another process appends a row to in.txt while the first chunk is labelled
CHANGE_INPUT = """import sys
from qlora_sentiment.api.analyzer import SentimentAnalyzer
real = SentimentAnalyzer.predict
def predict(self, *args, **kwargs):
    with open("in.txt", "a") as other_writer:
        other_writer.write("one more review\\n")
    return real(self, *args, **kwargs)
SentimentAnalyzer.predict = predict
from qlora_sentiment.cli import main
main(sys.argv[1:])
"""
TRAINED_OUTPUT_PROBLEMS = ("predict-input-changed", "predict-stdout-full", "predict-record-disk-full")


def trained_output_problem(problem_id, tmp, trained, run):
    """tests/test_bad_inputs.py's trigger for TRAINED_OUTPUT_PROBLEMS, with the session's tiny trained model."""
    (tmp / "in.txt").write_text("a fine film\na dull one\n")
    argv = ["predict", *model_args(trained), "--file", "in.txt", "--output", "out.jsonl"]
    if problem_id == "predict-stdout-full":
        return run(["sh", "-c", 'exec "$0" "$@" > /dev/full', CLI, *argv[:-2]], tmp)
    result = run([sys.executable, "-c", FULL_RECORD if problem_id == "predict-record-disk-full" else CHANGE_INPUT,
                  *argv], tmp)
    assert not json.loads((tmp / "out.jsonl.progress.json").read_text())["complete"]
    return result


LINES = 1200  # with --batch-size 2 (chunks of 16 rows) the tiny model takes seconds: time to signal it mid-run
_REVIEWS = {}


def run_main(*argv) -> int:
    """The real command in this process (the model loads in a second here, not in a fresh interpreter)."""
    from qlora_sentiment.cli import main

    try:
        main(["predict", *argv])
    except SystemExit as exc:
        return exc.code
    return 0


def make_reviews(trained, tmp_path_factory):
    """An input of LINES reviews and the uninterrupted run's CSV: what every interrupted run must end up as (made
    once a session, for both test modules)."""
    if trained in _REVIEWS:
        return _REVIEWS[trained]
    folder = tmp_path_factory.mktemp("labelling")
    source = folder / "reviews.txt"
    source.write_text("".join(f"review {i}: the film was {('great', 'dull', '=SUM(A1)')[i % 3]}\n"
                              for i in range(LINES)))
    reference = folder / "reference.csv"
    assert run_main(*model_args(trained), "--batch-size", "2", "--file", str(source), "--format", "csv",
                    "--output", str(reference)) == 0
    _REVIEWS[trained] = source, reference.read_bytes(), folder / "reference.csv.progress.json"
    return _REVIEWS[trained]


def start(trained, source, output, *extra):
    return subprocess.Popen([CLI, "predict", *model_args(trained), "--batch-size", "2", "--file", str(source),
                             "--format", "csv", "--output", str(output), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc, ready, what):
    deadline = time.time() + 240
    while not ready():
        assert proc.poll() is None, f"predict ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"no {what} in 240 s"
        time.sleep(0.02)


def committed_rows(output):
    record = output.with_name(output.name + ".progress.json")
    try:
        return json.loads(record.read_text())["rows_written"]
    except (OSError, ValueError):
        return 0
