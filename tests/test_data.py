"""prepare: every source through the real loaders, deterministic leakage-free splits, clear errors."""

import json

import pandas as pd
import pytest

from qlora_sentiment.config import DataConfig, SplitConfig
from qlora_sentiment.data import prepare
from qlora_sentiment.errors import DataError

RT = DataConfig(label_column="category", group_column="movie_name")


def test_offline_rotten_tomatoes_split_by_movie_and_deterministic():
    records, stats = prepare(RT, seed=7)
    groups = {name: {r["group"] for r in rows} for name, rows in records.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    texts = [r["text"] for rows in records.values() for r in rows]
    assert len(texts) == len(set(texts)), "a text appears twice"
    assert stats["source_rows"] == 4866  # the 156 plot summaries are not sentiment rows
    total = sum(stats[s]["n"] for s in ("train", "validation", "test"))
    assert total == 4866 - stats["dropped"]["duplicate"] - stats["dropped"]["empty"]
    assert 0.07 < stats["test"]["n"] / total < 0.13
    again, _ = prepare(RT, seed=7)
    assert again == records
    other, _ = prepare(RT, seed=8)
    assert other["test"] != records["test"]


def test_caps_keep_label_balance():
    cfg = DataConfig(label_column="category", group_column="movie_name", max_train=100, max_test=40)
    records, stats = prepare(cfg, seed=1)
    assert stats["train"]["n"] == 100 and stats["test"]["n"] == 40
    assert abs(stats["train"]["labels"]["positive"] - 50) <= 2


def _frame(n=60):
    rows = [{"review": f"  review number {i}   is {'great' if i % 2 else 'bad'} ", "stars": "pos" if i % 2 else "neg"}
            for i in range(n)]
    rows.append({"review": "   ", "stars": "pos"})               # empty after whitespace normalisation
    rows.append({"review": "REVIEW number 1 is great", "stars": "pos"})  # duplicate (case-insensitive)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_local_files(tmp_path, suffix):
    path = tmp_path / f"reviews{suffix}"
    frame = _frame()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    cfg = DataConfig(source="local", name=str(path), text_column="review", label_column="stars")
    records, stats = prepare(cfg, seed=0)
    assert stats["dropped"] == {"empty": 1, "duplicate": 1}
    assert sum(stats[s]["n"] for s in ("train", "validation", "test")) == 60
    assert records["train"][0]["text"] == records["train"][0]["text"].strip()
    assert "  " not in "".join(r["text"] for r in records["train"])
    # stratified: both labels in every split
    assert all(min(stats[s]["labels"].values()) > 0 for s in ("train", "validation", "test"))


def test_hub_code_path_on_a_local_dataset_folder(tmp_path):
    """data.source: hub goes through datasets.load_dataset; a local folder exercises that same call offline."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    for split, n in (("train", 50), ("test", 20)):
        ds = datasets.Dataset.from_dict({"sentence": [f"{split} text {i}" for i in range(n)],
                                         "label": [i % 2 for i in range(n)]}, features=features)
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                        "  - split: train\n    path: train.parquet\n  - split: test\n    path: test.parquet\n---\n")
    cfg = DataConfig(source="hub", name=str(tmp_path), text_column="sentence", label_column="label", hub_splits=["train"])
    records, stats = prepare(cfg, seed=0)
    assert sum(stats[s]["n"] for s in ("train", "validation", "test")) == 50
    assert {r["label"] for r in records["train"]} == {"negative", "positive"}  # ClassLabel names neg/pos mapped
    with pytest.raises(DataError, match="data.hub_splits: 'dev' is not a split"):
        prepare(DataConfig(source="hub", name=str(tmp_path), text_column="sentence", hub_splits=["dev"]), seed=0)


def test_unreachable_hub_dataset_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load dataset 'no-such-org/no-such-data'.*HF_HUB_OFFLINE"):
        prepare(DataConfig(source="hub", name="no-such-org/no-such-data"), seed=0)


@pytest.mark.parametrize("case,message", [
    ("missing_file", "data.name: file not found"),
    ("missing_column", "data.text_column: column 'review' not in"),
    ("unknown_label", "row 4: label 'meh' is not in the label map"),  # rows[3] is the 4th data row
    ("single_class", "only one label (['positive'])"),
    ("all_empty", "no rows left after dropping empty and duplicate texts"),
    ("not_utf8", "not UTF-8 at byte"),
])
def test_bad_local_data(tmp_path, case, message):
    path = tmp_path / "data.csv"
    rows = [{"review": f"text {i}", "stars": "pos" if i % 2 else "neg"} for i in range(20)]
    if case == "missing_column":
        rows = [{"body": r["review"], "stars": r["stars"]} for r in rows]
    if case == "unknown_label":
        rows[3]["stars"] = "meh"
    if case == "single_class":
        rows = [dict(r, stars="pos") for r in rows]
    if case == "all_empty":
        rows = [dict(r, review=" ") for r in rows]
    if case != "missing_file":
        pd.DataFrame(rows).to_csv(path, index=False)
    if case == "not_utf8":
        path.write_bytes(path.read_bytes() + "café,pos\n".encode("latin-1"))
    cfg = DataConfig(source="local", name=str(path), text_column="review", label_column="stars")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        prepare(cfg, seed=0)


def test_three_class_labels_from_integers(tmp_path):
    path = tmp_path / "tweets.jsonl"
    path.write_text("".join(json.dumps({"text": f"tweet {i}", "label": i % 3}) + "\n" for i in range(90)))
    cfg = DataConfig(source="local", name=str(path), labels=["negative", "neutral", "positive"],
                     split=SplitConfig(0.6, 0.2, 0.2))
    records, stats = prepare(cfg, seed=0)
    assert stats["test"]["labels"] == {"negative": 6, "neutral": 6, "positive": 6}
