"""`predict` streams: the input is read lazily (checked in a first pass that keeps nothing), rows are written a chunk
at a time, `--output FILE --resume` continues a killed run to the same bytes, Ctrl-C and SIGTERM stop with one line,
CSV cells are neutralised. The catalogue's `predict` output/resume rows are triggered by `output_problem` below."""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import subprocess
import time

import pytest

from helpers import CLI, cli
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.serving.labelling import Formatter, model_fingerprint
from qlora_sentiment.serving.textfiles import TextFile

LINES = 1200  # with --batch-size 2 (chunks of 16 rows) the tiny model takes seconds: time to signal it mid-run


def model_args(trained):
    return ["--model", str(trained / "adapter"), "--base", str(trained / "base"), "--threads", "1"]


def run_main(*argv) -> int:
    """The real command in this process (the model loads in a second here, not in a fresh interpreter)."""
    from qlora_sentiment.cli import main

    try:
        main(["predict", *argv])
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.fixture(scope="module")
def reviews(trained, tmp_path_factory):
    """An input of LINES reviews and the uninterrupted run's CSV: what every interrupted run must end up as."""
    folder = tmp_path_factory.mktemp("labelling")
    source = folder / "reviews.txt"
    source.write_text("".join(f"review {i}: the film was {('great', 'dull', '=SUM(A1)')[i % 3]}\n"
                              for i in range(LINES)))
    reference = folder / "reference.csv"
    assert run_main(*model_args(trained), "--batch-size", "2", "--file", str(source), "--format", "csv",
                    "--output", str(reference)) == 0
    return source, reference.read_bytes(), folder / "reference.csv.progress.json"


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


def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe():
    rows = [{"text": t, "label": "positive", "probabilities": {"negative": 0.25, "positive": 0.75}}
            for t in ("=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "plain = fine")]
    safe = Formatter("csv", ["negative", "positive"]).rows(rows).splitlines()
    assert [line.split(",")[0] for line in safe] == ['"\'=HYPERLINK(""x"")"', "'+1", "'-2", "'@SUM(A1)", "'\tx",
                                                      "plain = fine"]
    raw = Formatter("csv", ["negative", "positive"], raw_csv=True).rows(rows).splitlines()
    assert raw[1].startswith("+1,") and raw[2].startswith("-2,")


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
                   "predict-resume-no-record", "predict-resume-output-changed")


def output_problem(problem_id, tmp, run):
    """tests/test_bad_inputs.py's trigger for the catalogue rows above: `run(argv, cwd)` runs the command."""
    (tmp / "in.txt").write_text("a fine film\na dull one\n")
    base = [CLI, "predict", "--file", "in.txt"]
    simple = {"predict-resume-without-output": [*base, "--model", "no-model", "--resume"],
              "predict-output-is-folder": [*base, "--model", "no-model", "--output", "."],
              "predict-output-no-folder": [*base, "--model", "no-model", "--output", "missing/out.jsonl"],
              "predict-output-not-a-file": [*base, "--model", "no-model", "--output", "/dev/null"],
              "predict-output-is-input": [*base, "--model", "no-model", "--output", "in.txt"],
              "predict-output-unwritable": [*base, "--model", "no-model", "--output", "o" * 300 + ".jsonl"]}
    if problem_id in simple:
        return run(simple[problem_id], tmp)
    model = stand_in_model(tmp / "adapter")
    (tmp / "out.jsonl").write_text('{"text": "a fine film"}\n')
    record = {"version": 1, "model": {"path": "adapter", "sha256": model_fingerprint(model)},
              "input": {"name": "in.txt", "sha256": hashlib.sha256((tmp / "in.txt").read_bytes()).hexdigest(),
                        "rows": 2},
              "format": "json", "text_column": None, "raw_csv": False, "batch_size": 16, "threads": None,
              "rows_written": 1, "bytes_written": 25, "complete": False,
              "output_sha256": hashlib.sha256(b'{"text": "a fine film"}\n').hexdigest()}
    change = {"predict-resume-other-model": {"model": {"path": "elsewhere", "sha256": "0" * 64}},
              "predict-resume-other-input": {"input": {"name": "old.txt", "sha256": "0" * 64, "rows": 2}},
              "predict-resume-other-format": {"format": "csv"},
              "predict-resume-output-changed": {"output_sha256": "0" * 64}}
    if problem_id != "predict-resume-no-record":
        (tmp / "out.jsonl.progress.json").write_text(json.dumps({**record, **change[problem_id]}))
    result = run([*base, "--model", "adapter", "--output", "out.jsonl", "--resume"], tmp)
    assert (tmp / "out.jsonl").read_text() == '{"text": "a fine film"}\n', "a refused resume changed the output"
    return result


def test_predict_help_names_the_streaming_options():
    out = cli("predict", "--help")
    assert out.returncode == 0 and "--resume" in out.stdout and "--raw-csv" in out.stdout
