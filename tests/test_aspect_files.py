"""Aspects in bulk (issue 40): `predict --file F --aspect-column COL` (or `--aspect-list-column COL`) on an aspect
model writes one row per (text, aspect) with its input row, the numbers of single `--aspect` calls; a SIGKILLed
run continued with --resume is the uninterrupted run's bytes; --ray takes the same files. The refusals (missing or
empty column, mixed rows, a list that is not one, an aspect not in its text) are catalogue rows, set off by
tests/test_bad_inputs.py; the reading rules without a model are here."""

from __future__ import annotations

import json
import logging
import subprocess

import numpy as np
import pytest

from helpers import CLI, cli
from predict_problems import committed_rows, run_main, stand_in_model, wait_for
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.labelling.aspectfiles import AspectFile, Pair

FOODS = ("great", "cold", "fine but slow", "=SUM(A1)")


def reviews(rows: int) -> list[dict]:
    return [{"id": i, "text": f"review {i}: the food was {FOODS[i % 4]} and the service {FOODS[(i + 1) % 4]}",
             "aspects": ["food", "service"] if i % 3 else ["service", "food", "review"]} for i in range(rows)]


@pytest.fixture()
def record(tmp_path):
    """A stand-in aspect_term record: what the first pass checks pairs against (no model loads)."""
    from qlora_sentiment.model.record import read_record

    return read_record(stand_in_model(tmp_path / "model")).model_copy(update={"task": "aspect_term"})


def test_pairs_in_order_from_one_aspect_or_a_list_per_row(tmp_path, record):
    (tmp_path / "one.tsv").write_text("text\taspect\nthe food was great\tfood\n the wine was cheap \t wine \n")
    (tmp_path / "list.csv").write_text('review,aspects\nthe food and the wine,"[""food"", ""wine""]"\nrude staff,'
                                       '"[""staff""]"\n')
    (tmp_path / "list.jsonl").write_text('{"text": "the food and the wine", "aspects": ["food", "wine"]}\n'
                                         '{"text": "rude staff", "aspects": ["staff"], "id": 7}\n\n')
    one = AspectFile.open_pairs(tmp_path / "one.tsv", "text", "aspect", False, record)
    assert (one.rows, list(one.texts())) == (2, [Pair(0, "the food was great", "food"),
                                                 Pair(1, "the wine was cheap", "wine")])
    listed = [Pair(0, "the food and the wine", "food"), Pair(0, "the food and the wine", "wine"),
              Pair(1, "rude staff", "staff")]
    for name, column in (("list.csv", "review"), ("list.jsonl", "text")):
        pairs = AspectFile.open_pairs(tmp_path / name, column, "aspects", True, record)
        assert (pairs.rows, list(pairs.texts()), list(pairs.texts(skip=2))) == (3, listed, listed[2:])
        assert pairs.unchanged()


def test_parquet_columns_are_read_a_batch_at_a_time(tmp_path, record):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qlora_sentiment.labelling.textfiles import TextFile

    rows = reviews(3000)  # row groups of 700, batches of 1,024: pairs cross both
    pq.write_table(pa.table({"text": [r["text"] for r in rows], "aspects": [r["aspects"] for r in rows]}),
                   tmp_path / "in.parquet", row_group_size=700)
    pairs = AspectFile.open_pairs(tmp_path / "in.parquet", "text", "aspects", True, record)
    expected = [Pair(i, r["text"], a) for i, r in enumerate(rows) for a in r["aspects"]]
    assert pairs.rows == len(expected) and list(pairs.texts()) == expected
    assert list(pairs.texts(skip=1500))[:3] == expected[1500:1503] and pairs.unchanged()
    texts = TextFile.open(tmp_path / "in.parquet")  # whole texts too
    assert list(texts.texts()) == [r["text"] for r in rows] and texts.unchanged()
    pq.write_table(pa.table({"text": ["the food", None]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="bad.parquet: line 2: 'text' is null, not a string"):
        TextFile.open(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet: line 1: no aspect column 'aspect' \(columns: \['text'\]\)"):
        AspectFile.open_pairs(tmp_path / "bad.parquet", "text", "aspect", False, record)


@pytest.mark.parametrize("data, listed, message", [
    (b'{"text": "the food", "aspect": "food"}\n{"text": "the wine", "aspect": null}\n', False,
     "in.jsonl: line 2: column 'aspect' is empty, but line 1 has an aspect"),
    (b'{"text": "the food", "aspect": ""}\n{"text": "the wine", "aspect": "wine"}\n', False,
     "in.jsonl: line 1: column 'aspect' is empty, but line 2 has an aspect"),
    (b'{"text": "the food", "aspects": ["food"]}\n{"text": "the wine", "aspects": []}\n', True,
     "in.jsonl: line 2: column 'aspects' is empty, but line 1 has an aspect"),
    (b'{"text": "the food", "aspects": ["food", 3]}\n', True,
     "in.jsonl: line 1: column 'aspects' is a list holding a number, not a list of aspects"),
    (b'{"text": "the food", "aspects": {"food": 1}}\n', True,
     "in.jsonl: line 1: column 'aspects' is an object, not a list of aspects"),
    (b'{"text": "the food", "aspects": ["food", " "]}\n', True, "in.jsonl: line 1: column 'aspects': aspects[1]: "
                                                                "empty text"),
    (b'{"text": "the food", "aspect": 3}\n', False, "in.jsonl: line 1: 'aspect' is a number, not a string"),
    (b'{"text": "the party was fun", "aspect": "fun"}\n{"text": "the food", "aspect": "wine"}\n', False,
     "in.jsonl: line 2: column 'aspect': 'wine' does not occur in the text"),
])
def test_each_bad_row_is_one_line_naming_file_line_and_column(tmp_path, record, data, listed, message):
    (tmp_path / "in.jsonl").write_bytes(data)
    with pytest.raises(DataError) as caught:
        AspectFile.open_pairs(tmp_path / "in.jsonl", "text", "aspects" if listed else "aspect", listed, record)
    assert str(caught.value).startswith(str(tmp_path / message)), caught.value


def test_a_csv_list_cell_is_a_json_array(tmp_path, record):
    (tmp_path / "in.csv").write_text("text,aspects\nthe food and the wine,\"food, wine\"\n")
    with pytest.raises(DataError, match=r"line 2: column 'aspects' is 'food, wine' \(not JSON\), not a list"):
        AspectFile.open_pairs(tmp_path / "in.csv", "text", "aspects", True, record)
    (tmp_path / "in.txt").write_text("the food\n")
    with pytest.raises(DataError, match="a .txt file has one text a line and no aspect column"):
        AspectFile.open_pairs(tmp_path / "in.txt", "text", "aspect", False, record)


def model_args(trained_aspects):
    return ["--model", str(trained_aspects.root / "export"), "--threads", "1"]


def test_a_file_gets_the_numbers_of_single_aspect_calls(trained_aspects, tmp_path):
    rows = reviews(6)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = cli("predict", *model_args(trained_aspects), "--file", str(tmp_path / "in.jsonl"),
              "--aspect-list-column", "aspects")
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(g["row"], g["text"], g["aspect"]) for g in got] == [(i, r["text"], a) for i, r in enumerate(rows)
                                                                 for a in r["aspects"]]
    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    analyzer = SentimentAnalyzer.from_pretrained(trained_aspects.root / "export", threads=1)
    single = [p for r in rows for p in analyzer.predict(r["text"], aspects=r["aspects"])]
    assert [g["label"] for g in got] == [p["label"] for p in single]
    np.testing.assert_allclose([list(g["probabilities"].values()) for g in got],
                               [list(p["probabilities"].values()) for p in single], atol=1e-5)
    # the same rows as Parquet (a list column): the same output
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    parquet = cli("predict", *model_args(trained_aspects), "--file", str(tmp_path / "in.parquet"),
                  "--aspect-list-column", "aspects")
    assert parquet.returncode == 0 and parquet.stdout == out.stdout, parquet.stderr
    # one aspect a row, as CSV: the input row first, the aspect after the text, formulas quoted
    (tmp_path / "in.csv").write_text("text,aspect\n" + "".join(f'"{r["text"]}",{r["aspects"][0]}\n' for r in rows))
    out = cli("predict", *model_args(trained_aspects), "--file", str(tmp_path / "in.csv"), "--aspect-column",
              "aspect", "--format", "csv")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "row,text,aspect,label,p_negative,p_neutral,p_positive" and len(lines) == 7
    assert lines[4].startswith("3,review 3: the food was =SUM(A1) and the service great,service,")
    # an aspect model's file needs its aspect column
    refused = cli("predict", *model_args(trained_aspects), "--file", str(tmp_path / "in.csv"))
    assert refused.returncode == 2 and "predict --file without --aspect-column takes whole texts" in refused.stderr


def test_a_sentence_model_refuses_an_aspect_column(tmp_path):
    stand_in_model(tmp_path / "model")
    (tmp_path / "in.csv").write_text("text,aspect\nthe food,food\n")
    refused = cli("predict", "--model", str(tmp_path / "model"), "--file", str(tmp_path / "in.csv"),
                  "--aspect-column", "aspect")
    assert refused.returncode == 2 and "aspects: this model labels whole texts" in refused.stderr, refused.stderr
    both = cli("predict", "--model", "m", "--file", "in.csv", "--aspect-column", "a", "--aspect-list-column", "b")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    no_file = cli("predict", "--model", "m", "--aspect-column", "aspect", "the food")
    assert no_file.returncode == 2 and "--aspect-column names a column of --file FILE" in no_file.stderr


PAIRS_ROWS = 1000  # 2,666 pairs: with --batch-size 2 (chunks of 16 pairs) seconds of labelling, time to kill it


def test_sigkill_then_resume_gives_the_uninterrupted_bytes(trained_aspects, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in reviews(PAIRS_ROWS)))
    pairs = sum(len(r["aspects"]) for r in reviews(PAIRS_ROWS))
    argv = [*model_args(trained_aspects), "--batch-size", "2", "--file", str(source), "--aspect-list-column",
            "aspects", "--format", "csv"]
    reference = tmp_path / "reference.csv"
    assert run_main(*argv, "--output", str(reference)) == 0
    output = tmp_path / "out.csv"
    proc = subprocess.Popen([CLI, "predict", *argv, "--output", str(output)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(proc, lambda: committed_rows(output) > 0, "recorded rows")
    proc.kill()
    proc.wait(timeout=30)
    done = committed_rows(output)
    assert 0 < done < pairs
    with output.open("ab") as handle:
        handle.write(b"1234,review 99: half a row, the kill came mid-wri")  # a row cut short: it must go
    capsys.readouterr()
    assert run_main(*argv, "--output", str(output), "--resume") == 0
    assert f"continuing after row {done:,} of {pairs:,}" in capsys.readouterr().err
    assert output.read_bytes() == reference.read_bytes()
    record = json.loads((tmp_path / "out.csv.progress.json").read_text())
    assert record["complete"] and (record["aspect_list_column"], record["aspect_column"]) == ("aspects", None)
    # another aspect column is another run: refused, the file kept
    assert run_main(*argv[:-4], "--aspect-column", "text", "--format", "csv", "--output", str(output),
                    "--resume") == 2
    assert "was written with aspect-column None, not 'text'" in capsys.readouterr().err
    assert output.read_bytes() == reference.read_bytes()


def test_ray_labels_the_same_pairs(trained_aspects, tmp_path):
    ray = pytest.importorskip("ray")
    import pyarrow.parquet as pq

    from qlora_sentiment.labelling.ray_labelling import label_with_ray

    rows = reviews(40)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    single = cli("predict", *model_args(trained_aspects), "--batch-size", "2", "--file", str(source),
                 "--aspect-list-column", "aspects")
    assert single.returncode == 0, single.stderr
    expected = [json.loads(line) for line in single.stdout.splitlines()]
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        run = label_with_ray([source], trained_aspects.root / "export", tmp_path / "out", workers=2, batch_size=2,
                             aspect_column="aspects", listed=True)
    finally:
        ray.shutdown()
    got = [r for shard in sorted((tmp_path / "out").glob("part-*.parquet")) for r in pq.read_table(shard).to_pylist()]
    assert run.rows == len(expected) == len(got)
    assert [(g["row"], g["text"], g["aspect"], g["label"]) for g in got] == \
        [(e["row"], e["text"], e["aspect"], e["label"]) for e in expected]
    worst = max(abs(g[f"p_{lab}"] - p) for g, e in zip(got, expected) for lab, p in e["probabilities"].items())
    assert worst <= 1e-6, worst
