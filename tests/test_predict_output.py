"""Nothing lost, nothing misread (issue 42): one writer per --output (a lock of predict's own, beside FILE's real
path, that dies with a SIGKILLed holder and never harms a file it did not make), a progress record checked against
the bytes before --resume trusts it, an input changed during the run never called complete (whatever the second
pass finds), a full disk (stdout, the record, --aspect's output) one line, and no terminal escape on stdout in any
format (JSON Lines values unchanged)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import CLI
from predict_problems import (FULL_RECORD, LINES, committed_rows, make_reviews, model_args, run_main, start,
                              wait_for)
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.labelling.output_lock import OutputLock


@pytest.fixture(scope="module")
def reviews(trained, tmp_path_factory):
    return make_reviews(trained, tmp_path_factory)


def predict_cli(trained, source, output, *extra, **popen):
    return subprocess.run([CLI, "predict", *model_args(trained), "--batch-size", "2", "--file", str(source),
                           "--format", "csv", "--output", str(output), *extra], capture_output=True, text=True,
                          timeout=300, **popen)


def one_error(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr[-2000:]
    return errors[0]


def test_one_writer_per_output_and_the_lock_dies_with_its_holder(trained, reviews, tmp_path):
    source, reference, _ = reviews
    output, record = tmp_path / "out.csv", tmp_path / "out.csv.progress.json"
    first = start(trained, source, output)
    try:
        wait_for(first, lambda: committed_rows(output) > 0, "recorded rows")
        first.send_signal(signal.SIGSTOP)  # it holds the lock and writes nothing while the others try
        before = output.read_bytes(), record.read_bytes()
        for extra in ([], ["--resume"]):
            assert one_error(predict_cli(trained, source, output, *extra)) == (
                f"error: {output}: another predict (pid {first.pid}) is writing it; wait for it or pick another "
                "--output")
            assert (output.read_bytes(), record.read_bytes()) == before  # neither FILE nor its record touched
    finally:
        first.kill()  # SIGKILL: no clean-up, the lock goes with the process
        first.wait(timeout=30)
    resumed = predict_cli(trained, source, output, "--resume")  # nothing to remove by hand first
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert output.read_bytes() == reference and not output.with_name(".out.csv.predict-lock").exists()


def test_a_symlink_to_the_output_shares_its_lock(tmp_path):
    (tmp_path / "out.csv").write_text("rows\n")
    (tmp_path / "latest.csv").symlink_to("out.csv")
    with OutputLock(tmp_path / "out.csv"):
        with pytest.raises(DataError, match=rf"^{tmp_path}/latest.csv: another predict \(pid {os.getpid()}\) is "
                                            "writing it"):
            OutputLock(tmp_path / "latest.csv").acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.csv", "out.csv"]  # the lock file gone with it


def test_the_lock_never_harms_a_file_it_did_not_make(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("a fine film\n")
    (tmp_path / "uv.lock").write_text("a user's lock file\n")  # FILE.lock: not predict's name
    assert run_main("--model", "no-model", "--file", "in.txt", "--output", "uv") == 2
    assert "no-model" in capsys.readouterr().err  # refused after the lock was taken and released
    assert (tmp_path / "uv.lock").read_text() == "a user's lock file\n" and not (tmp_path / ".uv.predict-lock").exists()
    (tmp_path / ".uv.predict-lock").write_text("not a pid\n")  # predict's name, someone else's bytes: left alone
    assert run_main("--model", "no-model", "--file", "in.txt", "--output", "uv") == 2
    assert capsys.readouterr().err == (f"error: --output uv: {tmp_path}/.uv.predict-lock exists and is not a predict "
                                       "lock file; move it away or pick another --output\n")
    assert (tmp_path / ".uv.predict-lock").read_text() == "not a pid\n"
    os.link("in.txt", ".out.csv.predict-lock")  # the lock's path is the input
    assert run_main("--model", "no-model", "--file", "in.txt", "--output", "out.csv") == 2
    assert capsys.readouterr().err == ("error: --output out.csv: its lock file .out.csv.predict-lock is the input "
                                       "file; name another --output\n")
    assert (tmp_path / "in.txt").read_text() == "a fine film\n"


@pytest.mark.parametrize("fails", ["flock", "pid"])
def test_a_lock_that_cannot_be_taken_is_one_line(tmp_path, monkeypatch, fails):
    def broken(*args):
        raise OSError(*((errno.ENOLCK, os.strerror(errno.ENOLCK)) if fails == "flock" else
                        (errno.ENOSPC, os.strerror(errno.ENOSPC))))

    monkeypatch.setattr(fcntl, "flock", broken) if fails == "flock" else monkeypatch.setattr(os, "pwrite", broken)
    reason = "No locks available" if fails == "flock" else "No space left on device"
    with pytest.raises(DataError, match=rf"^--output {tmp_path}/out.csv: cannot make its lock file "
                                        rf"\.out\.csv\.predict-lock \({reason}\)$"):
        OutputLock(tmp_path / "out.csv").acquire()


def test_a_busy_output_is_not_touched_and_stops_aspect_runs_before_the_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("a fine film\n")
    opened, real_open = [], os.open

    def watched(path, flags, *args, **kwargs):
        opened.append(os.fspath(path)) if os.fspath(path).endswith("out.jsonl") else None
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", watched)
    busy = (f"error: out.jsonl: another predict (pid {os.getpid()}) is writing it; wait for it or pick another "
            "--output\n")
    with OutputLock(tmp_path / "out.jsonl"):
        # FILE absent: the write probe (which makes FILE and removes it) comes only under the lock, never here
        assert run_main("--model", "no-model", "--file", "in.txt", "--output", "out.jsonl") == 2
        assert capsys.readouterr().err == busy and opened == [] and not (tmp_path / "out.jsonl").exists()
        # --aspect: stopped at once, before the model (here: none) is looked at
        assert run_main("--model", "no-model", "--aspect", "film", "a fine film", "--output", "out.jsonl") == 2
        assert capsys.readouterr().err == busy and opened == []


def partial_run(reviews, tmp_path, rows=32):
    """out.csv holding the header and the first `rows` rows of the reference, with the record a run stopped there
    would have written."""
    source, reference, record = reviews
    size = len(b"".join(reference.splitlines(keepends=True)[:rows + 1]))
    output = tmp_path / "out.csv"
    output.write_bytes(reference[:size])
    good = {**json.loads(record.read_text()), "rows_written": rows, "bytes_written": size, "complete": False,
            "output_sha256": hashlib.sha256(reference[:size]).hexdigest()}
    return output, good


def test_resume_checks_the_record_against_the_bytes(trained, reviews, tmp_path):
    source = reviews[0]
    output, good = partial_run(reviews, tmp_path)
    record = tmp_path / "out.csv.progress.json"
    mismatch = "does not match its progress record (out.csv.progress.json says {} rows in the first {:,} bytes; " \
        "they hold 32)"
    size = good["bytes_written"]
    cases = [({"rows_written": 132}, mismatch.format(132, size)),  # 100 rows would be missing
             ({"rows_written": 16}, mismatch.format(16, size)),  # 16 rows would be there twice
             ({"bytes_written": 0}, "says 32 rows in the first 0 bytes; they hold 0"),  # 32 rows lost
             ({"bytes_written": 0, "output_sha256": hashlib.sha256(b"").hexdigest()}, "they hold 0"),
             ({"complete": True}, "holds 32 rows and its progress record says complete, but the input has 1,200"),
             ({"rows_written": "10"}, 'no usable progress record (out.csv.progress.json: rows_written is "10", not '
                                      "a whole number >= 0)"),
             ({"rows_written": -5}, "rows_written is -5, not a whole number >= 0"),
             ({"rows_written": 12.5}, "rows_written is 12.5, not a whole number >= 0"),
             ({"model": None}, "model is null, not an object"),
             ({"complete": "yes"}, 'complete is "yes", not true or false'),
             ({"input": {**good["input"], "rows": 0}}, "input.rows is 0, not a whole number >= 1"),
             ({"version": True}, "not a progress record of this version")]
    before = output.read_bytes()
    for change, message in [*cases, ("{not json", "(out.csv.progress.json: unreadable: ")]:
        record.write_text(change if isinstance(change, str) else json.dumps({**good, **change}))
        written = record.read_bytes()
        error = one_error(predict_cli(trained, source, output, "--resume"))
        assert message in error and error.endswith("; start over without --resume"), (change, error)
        assert output.read_bytes() == before and record.read_bytes() == written, change  # refused: left alone


def test_an_input_that_changes_during_the_run_is_not_called_complete(trained, reviews, tmp_path):
    source, reference, _ = reviews
    changes = {"appended": lambda f: (f.seek(0, 2), f.write(b"one more review\n" * 50)),
               "edited": lambda f: f.write(b"R"),  # "review 0" -> "Review 0": the same length, another text
               # cut mid-line further on, a blank row after: a bad row on the second pass, not an "empty text" error
               "cut": lambda f: (f.seek(f.seek(0, 2) // 2), f.truncate(), f.write(b"\n\nthe end\n"))}
    runs = {}
    for how in changes:
        (tmp_path / f"{how}.txt").write_bytes(source.read_bytes())
        runs[how] = start(trained, tmp_path / f"{how}.txt", tmp_path / f"{how}.csv")
    waiting, deadline = dict(runs), time.time() + 240
    while waiting:  # each input is changed once its run has written rows
        for how, proc in list(waiting.items()):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
            output = tmp_path / f"{how}.csv"
            if output.is_file() and output.read_bytes().count(b"\n") > 20:
                with (tmp_path / f"{how}.txt").open("r+b") as handle:
                    changes[how](handle)
                del waiting[how]
        time.sleep(0.02)
    for how, proc in runs.items():
        _, err = proc.communicate(timeout=240)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
        assert one_error(result) == (
            f"error: {tmp_path / how}.txt: changed while it was being labelled (appended or edited after its rows "
            f"were checked); {tmp_path / how}.csv is left incomplete: label it again without --resume once it "
            "stops changing")
        record = json.loads((tmp_path / f"{how}.csv.progress.json").read_text())
        rows = (tmp_path / f"{how}.csv").read_bytes().count(b"\n") - 1
        assert not record["complete"] and record["rows_written"] == rows  # stopped and recorded: what was written
        assert rows == LINES if how != "cut" else 20 < rows < LINES // 2  # the rows checked, not one more
    again = predict_cli(trained, tmp_path / "appended.txt", tmp_path / "appended.csv", "--resume")
    assert "was labelled from other input" in one_error(again)


def test_a_full_disk_is_one_line(trained, tmp_path):
    with open("/dev/full", "w") as full:  # stdout on a full disk
        result = subprocess.run([CLI, "predict", *model_args(trained), "--format", "csv", "a fine film"],
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert one_error(result) == ("error: stdout: cannot write it (No space left on device); 0 rows were written: "
                                 "free the space, or write with --output FILE (resumable)")
    output = tmp_path / "out.jsonl"  # the progress record on a full disk
    argv = ["predict", *model_args(trained), "--output", str(output), "a fine film", "a dull one", "=1+1"]
    result = subprocess.run([sys.executable, "-c", FULL_RECORD, *argv], capture_output=True, text=True, timeout=300)
    assert one_error(result) == (f"error: --output {output}: cannot write its progress record out.jsonl.progress.json "
                                 "(No space left on device); 0 rows are recorded complete: free the space and "
                                 "continue with --resume")
    resumed = subprocess.run([CLI, *argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads(output.with_name("out.jsonl.progress.json").read_text())
    assert record["complete"] and record["rows_written"] == 3 and len(output.read_text().splitlines()) == 3


FULL_DISK = """import errno, os, sys
def replace(*args, **kwargs):  # every file written atomically: the disk is full
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
os.replace = replace
from qlora_sentiment.cli import main
main(sys.argv[1:])
"""


def test_aspect_output_on_a_full_disk_is_one_line(trained_aspects, tmp_path):
    argv = ["predict", "--model", str(trained_aspects.root / "export"), "--threads", "1", "--aspect", "food",
            "the food was great", "--output", str(tmp_path / "out.jsonl")]
    result = subprocess.run([sys.executable, "-c", FULL_DISK, *argv], capture_output=True, text=True, timeout=300)
    assert one_error(result) == f"error: --output {tmp_path}/out.jsonl: cannot write it (No space left on device)"


def test_nul_and_terminal_escapes_are_made_visible_in_csv_and_the_table(trained, capsys):
    texts = ["\x00=1+1", "\x1b[2J\x1b[31mred", "a lone\rreturn", "\x9b2J bye", "form\x0cfeed\x7f"]
    shown = {"csv": ["\u2400=1+1", "\u241b[2J\u241b[31mred", '"a lone\rreturn"', "\\x9b2J bye", "form\x0cfeed\x7f"],
             # splitlines: FF a break
             "table": ["\u2400=1+1", "\u241b[2J\u241b[31mred", "a lone return", "\\x9b2J bye", "form feed\u2421"]}
    for fmt, cells in shown.items():
        assert run_main(*model_args(trained), "--format", fmt, *texts) == 0
        out = capsys.readouterr().out
        assert "\x00" not in out and "\x1b" not in out and "\x9b" not in out, repr(out)
        rows = re.split(r"(?<!\r)\n", out)[1:-1]  # the header first; a quoted lone CR stays inside its row
        assert [row.split(",")[0] if fmt == "csv" else row.split("  ")[-1] for row in rows] == cells, rows
    assert run_main(*model_args(trained), "--format", "json", *texts) == 0  # escaped, C1 and DEL too: unchanged
    out = capsys.readouterr().out
    assert not re.search("[\x00-\x1f\x7f-\x9f]", out.replace("\n", "")), repr(out)
    assert '"\\u009b2J bye"' in out and "\\u007f" in out
    assert [json.loads(line)["text"] for line in out.splitlines()] == texts
