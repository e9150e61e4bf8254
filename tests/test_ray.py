"""`predict --ray` (labelling/ray_labelling.py): two Ray workers on a local cluster label two files into shards that
hold single-process predict's rows, ids and numbers; bad input is one line, before Ray starts, with nothing written."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from helpers import cli, free_port

from qlora_sentiment.labelling.ray_labelling import label_with_ray  # imports Ray only when it runs
from qlora_sentiment.labelling.textfiles import TextFile

ray = pytest.importorskip("ray")

ROWS = 1000  # per file
BATCH = 4  # forward passes of 4: predict's chunks (x 8) are 32 rows, Ray's blocks 224 (7 chunks)
WORDS = ("great", "dull", "brilliant fun", "awful and boring", "not very good", "=SUM(A1)")


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (starting one takes seconds): 2 CPUs, one per worker."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of two inputs, a .txt and a .jsonl, texts of different lengths (predict sorts a chunk by length)."""
    folder = tmp_path_factory.mktemp("ray-inputs")
    (folder / "a.txt").write_text("".join(f"review {i}: {' the film' * (i % 5)} was {WORDS[i % 6]}\n"
                                          for i in range(ROWS)))
    (folder / "b.jsonl").write_text("".join(json.dumps({"id": i, "text": f"{WORDS[i % 4]}, said review {i}"}) + "\n"
                                            for i in range(ROWS)))
    return folder


def single_process(export, path):
    """What `predict --file path --batch-size BATCH --threads 1` scores: the same readers, the same chunks."""
    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    texts = list(TextFile.open(path).texts())
    analyzer = SentimentAnalyzer.from_pretrained(export, threads=1)
    chunk = BATCH * 8
    out = []
    for start in range(0, len(texts), chunk):
        out += analyzer.predict(texts[start:start + chunk], batch_size=BATCH)
    return texts, out, analyzer.labels


def test_two_workers_match_single_process_predict(trained, inputs, cluster, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "labelled"
    run = label_with_ray([inputs], trained / "export", out, workers=2, batch_size=BATCH, threads_per_worker=1,
                         rows_per_shard=400)
    shards = sorted(out.glob("part-*.parquet"))
    assert (run.rows, run.files, run.shards) == (2 * ROWS, 2, len(shards)) and len(shards) > 1
    rows = [r for shard in shards for r in pq.read_table(shard).to_pylist()]  # shard names in input order
    files = [str(inputs / "a.txt"), str(inputs / "b.jsonl")]
    assert [(r["file"], r["row"]) for r in rows] == [(f, i) for f in files for i in range(ROWS)]
    worst = 0.0
    for name in files:
        texts, expected, labels = single_process(trained / "export", name)
        got = [r for r in rows if r["file"] == name]
        assert [r["text"] for r in got] == texts
        assert [r["label"] for r in got] == [p["label"] for p in expected]
        worst = max(worst, *(abs(r[f"p_{lab}"] - p["probabilities"][lab])
                             for r, p in zip(got, expected) for lab in labels))
    assert worst <= 1e-6, worst


def test_labeller_calls_predict_per_chunk_and_neutralises_csv(trained):
    """The worker's class in this process: one predict call per predict chunk, ids kept, CSV formulas quoted."""
    import pyarrow as pa

    from qlora_sentiment.api.analyzer import SentimentAnalyzer
    from qlora_sentiment.labelling.ray_labelling import Labeller

    texts = ["=SUM(A1)", "a dull, two-line\nreview", "great fun", "@cmd"]
    batch = pa.table({"file": ["a.txt", "a.txt", "a.txt", "b.txt"], "row": [4, 5, 6, 0], "text": texts})
    labeller = Labeller(str(trained / "export"), None, "auto", 1, 2, chunk=2, neutralise_csv=True)
    out = labeller(batch).to_pylist()
    analyzer = SentimentAnalyzer.from_pretrained(trained / "export", threads=1)
    expected = [p for part in (texts[:2], texts[2:3], texts[3:]) for p in analyzer.predict(part, batch_size=2)]
    assert [(r["file"], r["row"], r["text"]) for r in out] == [
        ("a.txt", 4, "'=SUM(A1)"), ("a.txt", 5, texts[1]), ("a.txt", 6, "great fun"), ("b.txt", 0, "'@cmd")]
    assert [r["label"] for r in out] == [p["label"] for p in expected]
    assert all(r[f"p_{lab}"] == p["probabilities"][lab] for r, p in zip(out, expected) for lab in analyzer.labels)


def test_ray_without_file_is_one_line(tmp_path):
    out = cli("predict", "--ray", "--output-dir", str(tmp_path / "out"), "good film")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [("error: --ray labels --file FILE or a folder of files (texts as "
                                                "arguments or on stdin: predict without --ray)")]
    assert not (tmp_path / "out").exists()


def predict_error(capsys, *argv) -> str:
    """The real command in this process: its one error line (exit code 2)."""
    from qlora_sentiment.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(lines) == 1, lines
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(trained, inputs, tmp_path, capsys, monkeypatch):
    model = ["--model", str(trained / "export")]
    used = tmp_path / "used"
    used.mkdir()
    (used / "old.parquet").write_text("")
    ray_args = [*model, "--file", str(inputs), "--ray"]
    assert "not empty" in predict_error(capsys, *ray_args, "--output-dir", str(used))
    out = str(tmp_path / "out")
    assert "cannot --resume" in predict_error(capsys, *ray_args, "--output-dir", out, "--resume")
    assert "--format table: with --ray" in predict_error(capsys, *ray_args, "--output-dir", out, "--format", "table")
    assert "--output-dir is for --ray" in predict_error(capsys, *model, "--file", str(inputs / "a.txt"),
                                                        "--output-dir", out)
    address = f"127.0.0.1:{free_port()}"
    assert f"--ray {address}: no Ray cluster answers there" in predict_error(
        capsys, *model, "--file", str(inputs), "--ray", address, "--output-dir", out)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert "pip install 'ray[data]'" in predict_error(capsys, *ray_args, "--output-dir", out)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["used"]
