"""`predict` streams: the input is read lazily (checked in a first pass that keeps nothing), rows are written a chunk
at a time, `--output FILE --resume` continues a killed run to the same bytes, Ctrl-C and SIGTERM stop with one line,
CSV cells are neutralised. What keeps a run's output from being lost or misread (issue 42: one writer, the record
checked, an input changed mid-run, a full disk, terminal escapes) is in tests/test_predict_output.py."""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import time

import pytest

from helpers import cli
from predict_problems import LINES, committed_rows, make_reviews, model_args, run_main, start, wait_for
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.labelling.output import Formatter
from qlora_sentiment.labelling.textfiles import TextFile


@pytest.fixture(scope="module")
def reviews(trained, tmp_path_factory):
    return make_reviews(trained, tmp_path_factory)


def test_sigkill_then_resume_gives_the_uninterrupted_bytes(trained, reviews, tmp_path, capsys):
    source, reference, _ = reviews
    output = tmp_path / "out.csv"
    proc = start(trained, source, output)
    wait_for(proc, lambda: committed_rows(output) > 0, "recorded rows")  # some rows are recorded complete
    proc.kill()
    proc.wait(timeout=30)
    done = committed_rows(output)
    assert 0 < done < LINES and reference.startswith(output.read_bytes()[:100])
    with output.open("ab") as handle:
        handle.write(b"review 99: half a row, the kill came mid-wri")  # a row cut short: it must go
    assert run_main(*model_args(trained), "--batch-size", "2", "--file", str(source), "--format", "csv",
                    "--output", str(output), "--resume") == 0
    assert f"continuing after row {done:,} of {LINES:,}" in capsys.readouterr().err  # not labelled from the start
    assert output.read_bytes() == reference
    record = json.loads(output.with_name("out.csv.progress.json").read_text())
    assert record["complete"] and record["rows_written"] == LINES
    assert record["output_sha256"] == hashlib.sha256(reference).hexdigest()
    # a finished run is not labelled again
    assert run_main(*model_args(trained), "--batch-size", "2", "--file", str(source), "--format", "csv",
                    "--output", str(output), "--resume") == 0
    assert "already complete (1,200 rows); nothing to do" in capsys.readouterr().err


def test_ctrl_c_and_sigterm_stop_with_one_line_and_complete_rows(trained, reviews, tmp_path):
    source, reference, _ = reviews
    runs = {signal.SIGINT: 130, signal.SIGTERM: 143}
    outputs = {signum: tmp_path / f"out-{signum.name}.csv" for signum in runs}
    procs = {signum: start(trained, source, outputs[signum]) for signum in runs}  # side by side: one start-up wait
    waiting, deadline = dict(procs), time.time() + 240
    while waiting:  # each is signalled as soon as it has written rows, whichever comes first
        for signum, proc in list(waiting.items()):
            assert proc.poll() is None, f"predict ended before it was signalled: {proc.stderr.read()[-2000:]}"
            assert time.time() < deadline, "no rows in 240 s"
            output = outputs[signum]
            if output.is_file() and output.read_bytes().count(b"\n") > 20:
                proc.send_signal(signum)
                del waiting[signum]
        time.sleep(0.02)
    for signum, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == runs[signum], err[-2000:]
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
        lines = [line for line in err.splitlines() if "interrupted" in line]
        assert len(lines) == 1, err[-2000:]
        match = re.fullmatch(rf"interrupted: ([\d,]+) of 1,200 rows written to .*out-{signum.name}\.csv; "
                             r"continue with --resume", lines[0].strip())
        assert match, lines[0]
        written = int(match.group(1).replace(",", ""))
        data = outputs[signum].read_bytes()
        assert reference.startswith(data) and data.endswith(b"\n")  # complete rows only, as the full run wrote them
        assert data.count(b"\n") == written + 1  # the header and the rows the line names
        assert committed_rows(outputs[signum]) == written  # the record says so: --resume continues right after


def test_resume_refuses_another_model_input_format_or_a_changed_output(trained, reviews, tmp_path, capsys):
    source, reference, record = reviews
    output = tmp_path / "out.csv"
    output.write_bytes(reference)  # the finished run, with its record
    output.with_name("out.csv.progress.json").write_bytes(record.read_bytes())
    common = ["--batch-size", "2", "--format", "csv", "--output", str(output), "--resume"]
    other = tmp_path / "other.txt"
    other.write_text("another review\n")
    cases = [(["--model", str(trained / "export"), "--file", str(source)], "was labelled by another model"),
             ([*model_args(trained), "--file", str(other)], "was labelled from other input"),
             ([*model_args(trained), "--file", str(source), "--raw-csv"], "raw-csv False, not True")]
    for argv, message in cases:
        assert run_main(*argv, *common) == 2
        assert message in capsys.readouterr().err
    output.write_bytes(reference.replace(b"great", b"grand", 1))
    assert run_main(*model_args(trained), "--file", str(source), *common) == 2
    assert "is not what predict wrote" in capsys.readouterr().err
    assert output.read_bytes() == reference.replace(b"great", b"grand", 1)  # refused: left as it was


def test_bad_input_leaves_an_existing_output_alone(trained, tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    output.write_text("an earlier result\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("good\n" * 1000 + "\n" + "bad\n")  # the blank row comes late: still before any output
    assert run_main(*model_args(trained), "--file", str(bad), "--output", str(output)) == 2
    assert "bad.txt: line 1001: empty text" in capsys.readouterr().err
    assert output.read_text() == "an earlier result\n"
    assert not output.with_name("out.jsonl.progress.json").exists()
    # without --resume a good run replaces it (as `>` would), with its record beside it
    assert run_main(*model_args(trained), "--output", str(output), "  spaces around  ") == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["spaces around"]  # what was scored: the text without them


def test_files_are_read_lazily_and_checked_whole_first(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\r\n1,\"two\nlines \"\r\n2,  =1+1\r\n\r\n\r\n")  # BOM, CRLF, blank tail
    text_file = TextFile.open(path)
    assert text_file.rows == 2 and text_file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    texts = text_file.texts()
    assert not isinstance(texts, list) and list(texts) == ["two\nlines", "=1+1"]
    assert list(text_file.texts(skip=1)) == ["=1+1"]
    path.write_bytes(b"text\n" + b"fine\n" * 5000 + b"\xff\n")
    with pytest.raises(DataError, match=r"r.csv: line 5002 is not UTF-8 \(byte 25005\)"):
        TextFile.open(path)
    stdin = TextFile.from_stream(io.BytesIO(b"good\r\nbad film\n\n"))  # read once: spooled for the second pass
    assert stdin.rows == 2 and list(stdin.texts()) == ["good", "bad film"]
    with pytest.raises(DataError, match="^no texts: give them"):
        TextFile.from_stream(io.BytesIO(b" \n\n"))
    path = tmp_path / "r.jsonl"  # a key given twice: refused, as the web API does, not the last one used
    path.write_text('{"text": "fine"}\n{"id": 1, "text": "a", "text": "b"}\n')
    with pytest.raises(DataError, match=r"r.jsonl: line 2: text: duplicate key in a JSON object; give each field "
                                        "once$"):
        TextFile.open(path)


def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe():
    rows = [{"text": t, "label": "positive", "probabilities": {"negative": 0.25, "positive": 0.75}}
            for t in ("=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "plain = fine")]
    safe = Formatter("csv", ["negative", "positive"]).rows(rows).splitlines()
    assert [line.split(",")[0] for line in safe] == ['"\'=HYPERLINK(""x"")"', "'+1", "'-2", "'@SUM(A1)", "'\tx",
                                                      "plain = fine"]
    raw = Formatter("csv", ["negative", "positive"], raw_csv=True).rows(rows).splitlines()
    assert raw[1].startswith("+1,") and raw[2].startswith("-2,")


def test_predict_help_names_the_streaming_options():
    out = cli("predict", "--help")
    assert out.returncode == 0 and "--resume" in out.stdout and "--raw-csv" in out.stdout
