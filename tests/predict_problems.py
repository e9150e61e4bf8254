"""The catalogue's `predict` output and resume triggers that take more than a command (bad_input_triggers.py's
kinds `output_busy`, `resume`: a stand-in model folder is enough, before a model loads; `trained_output`: the
session's tiny trained model, failing midway). Below them, what
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


# a process holding FILE's lock as a running predict does (flock on .FILE.predict-lock, its pid inside)
HOLDER = ("import fcntl, os, sys, time\n"
          "fd = os.open('.out.jsonl.predict-lock', os.O_RDWR | os.O_CREAT)\n"
          "fcntl.flock(fd, fcntl.LOCK_EX)\n"
          "os.write(fd, b'%d\\n' % os.getpid())\n"
          "print('locked', flush=True)\n"
          "time.sleep(120)\n")


def output_busy(tmp, run):
    """`predict --output out.jsonl` while another process holds its lock: refused naming that pid, out.jsonl kept."""
    (tmp / "in.txt").write_text("a fine film\na dull one\n")
    (tmp / "out.jsonl").write_text('{"text": "a fine film"}\n')
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=tmp, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = run([CLI, "predict", "--file", "in.txt", "--model", "no-model", "--output", "out.jsonl"], tmp)
    finally:
        holder.kill()
        holder.wait()
    assert f"(pid {holder.pid})" in result.stderr, result.stderr
    assert (tmp / "out.jsonl").read_text() == '{"text": "a fine film"}\n', "a refused run changed the output"
    return result


def resume(tmp, change, run):
    """`predict --resume` of out.jsonl (one row of two) by a stand-in adapter, its progress record updated with
    `change` (None: no record): refused, out.jsonl as it was."""
    (tmp / "in.txt").write_text("a fine film\na dull one\n")
    (tmp / "out.jsonl").write_text('{"text": "a fine film"}\n')
    model = stand_in_model(tmp / "adapter")
    record = {"version": 1, "model": {"path": "adapter", "sha256": model_fingerprint(model)},
              "input": {"name": "in.txt", "sha256": hashlib.sha256((tmp / "in.txt").read_bytes()).hexdigest(),
                        "rows": 2},
              "format": "json", "text_column": None, "raw_csv": False, "batch_size": 16, "threads": None,
              "rows_written": 1, "bytes_written": 24, "complete": False,
              "output_sha256": hashlib.sha256(b'{"text": "a fine film"}\n').hexdigest()}
    if change is not None:
        (tmp / "out.jsonl.progress.json").write_text(json.dumps({**record, **change}))
    result = run([CLI, "predict", "--file", "in.txt", "--model", "adapter", "--output", "out.jsonl", "--resume"], tmp)
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


def trained_output(what, tmp, trained, run):
    """A run of the session's tiny trained model that fails midway: stdout_full, record_disk_full, input_changed."""
    (tmp / "in.txt").write_text("a fine film\na dull one\n")
    argv = ["predict", *model_args(trained), "--file", "in.txt", "--output", "out.jsonl"]
    if what == "stdout_full":
        return run(["sh", "-c", 'exec "$0" "$@" > /dev/full', CLI, *argv[:-2]], tmp)
    result = run([sys.executable, "-c", FULL_RECORD if what == "record_disk_full" else CHANGE_INPUT,
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
