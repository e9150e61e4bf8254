"""prepare: every source through the real loaders, labels, cleaning, leakage, sizes, the report, clear errors."""

import json
import re

import pandas as pd
import pytest

from helpers import data_config

from qlora_sentiment.data.prepare import SPLITS, prepare
from qlora_sentiment.core.errors import DataError

RT = data_config(label_column="category", group_column="movie_name")
THREE = ["negative", "neutral", "positive"]


def total(report):
    return sum(report[s]["n"] for s in SPLITS)


def texts(records):
    return [r["text"] for rows in records.values() for r in rows]


def test_offline_rotten_tomatoes_split_by_movie_and_deterministic():
    records, report = prepare(RT, seed=7)
    groups = {name: {r["group"] for r in rows} for name, rows in records.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert report["overlap"] == {"texts": dict.fromkeys(["train_validation", "train_test", "validation_test"], 0),
                                 "groups": dict.fromkeys(["train_validation", "train_test", "validation_test"], 0)}
    assert len(texts(records)) == len(set(texts(records))), "a text appears twice"
    assert report["rows_read"] == {"all": 4866}  # the 156 plot summaries are not sentiment rows
    dropped = report["dropped"]
    assert total(report) == 4866 - dropped["duplicate"] - dropped["empty"] - dropped["too_short"]
    assert 0.07 < report["test"]["n"] / total(report) < 0.13
    assert not any("&amp;" in t for t in texts(records)), "HTML entities are unescaped"
    assert report["changed"]["normalised"] > 0
    again, _ = prepare(RT, seed=7)
    assert again == records
    other, _ = prepare(RT, seed=8)
    assert other["test"] != records["test"]


def test_caps_keep_label_balance_and_balance_equalises_train(tmp_path):
    cfg = data_config(label_column="category", group_column="movie_name", max_train=100, max_test=40)
    records, report = prepare(cfg, seed=1)
    assert report["train"]["n"] == 100 and report["test"]["n"] == 40
    assert abs(report["train"]["labels"]["positive"] - 50) <= 2
    # A skewed file: 3:1 positive. balance undersamples train only, the same way every time.
    path = tmp_path / "skewed.csv"
    pd.DataFrame({"text": [f"text number {i}" for i in range(400)],
                  "label": ["positive" if i % 4 else "negative" for i in range(400)]}).to_csv(path, index=False)
    cfg = data_config(source="local", name=str(path), balance=True)
    records, report = prepare(cfg, seed=3)
    assert report["train"]["labels"]["negative"] == report["train"]["labels"]["positive"] == 80
    assert report["dropped"]["balance"] == 160
    assert report["test"]["labels"] == {"negative": 10, "positive": 30}  # evaluation keeps the real mix
    assert prepare(cfg, seed=3)[0] == records


def _frame(n=60):
    rows = [{"review": f"  review number {i}   is {'great' if i % 2 else 'bad'} ", "stars": "pos" if i % 2 else "neg"}
            for i in range(n)]
    rows.append({"review": "   ", "stars": "pos"})               # empty after whitespace normalisation
    rows.append({"review": "REVIEW number 1 is great!", "stars": "pos"})  # near duplicate (case, punctuation)
    return pd.DataFrame(rows)


def _write(frame, path):
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_local_files(tmp_path, suffix):
    path = tmp_path / f"reviews{suffix}"
    _write(_frame(), path)
    cfg = data_config(source="local", name=str(path), text_column="review", label_column="stars")
    records, report = prepare(cfg, seed=0)
    assert report["dropped"]["empty"] == 1 and report["dropped"]["duplicate"] == 1
    assert total(report) == 60
    assert records["train"][0]["text"] == records["train"][0]["text"].strip()
    assert "  " not in "".join(r["text"] for r in records["train"])
    # stratified: both labels in every split
    assert all(min(report[s]["labels"].values()) > 0 for s in SPLITS)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_local_file_per_split_with_leakage_dropped_and_reported(tmp_path, suffix):
    frame = _frame(80)
    _write(frame.iloc[:60], tmp_path / f"train{suffix}")
    test = pd.concat([frame.iloc[60:80], pd.DataFrame([{"review": "Review number 3, is great.", "stars": "pos"}])])
    _write(test, tmp_path / f"test{suffix}")  # the last row is train's row 3 again: leakage
    cfg = data_config(source="local", name=str(tmp_path), text_column="review", label_column="stars",
                     splits={"train": f"train{suffix}", "test": f"test{suffix}"})
    records, report = prepare(cfg, seed=0)
    assert report["rows_read"] == {"train": 60, "test": 21}
    assert report["dropped"]["leakage"] == {"test_in_train": 1}
    assert report["test"]["n"] == 20  # the file's own test split, minus the leaked row
    assert report["train"]["n"] + report["validation"]["n"] == 60  # validation carved from train
    assert 4 <= report["validation"]["n"] <= 8  # 0.1 / (0.8 + 0.1) of train
    assert report["overlap"]["texts"] == {"train_validation": 0, "train_test": 0, "validation_test": 0}
    with pytest.raises(DataError, match="data.name: file not found: .*dev"):
        prepare(data_config(source="local", name=str(tmp_path), text_column="review", label_column="stars",
                           splits={"train": f"train{suffix}", "validation": f"dev{suffix}"}), seed=0)


def _hub_like(folder, splits, text="sentence", names=("neg", "pos")):
    """A dataset saved with save_to_disk: the same datasets objects (ClassLabel, splits) the hub gives."""
    import datasets

    features = datasets.Features({text: datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})
    parts = {}
    for split, n in splits.items():
        labels = [-1] * n if split == "unlabelled" else [i % len(names) for i in range(n)]
        parts[split] = datasets.Dataset.from_dict({text: [f"{split} text {i}" for i in range(n)], "label": labels},
                                                  features=features)
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    return str(folder)


def test_hub_code_path_on_a_local_dataset_folder(tmp_path):
    """data.source: hub goes through datasets.load_dataset; a local parquet folder exercises that same call."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    for split, n in (("train", 50), ("test", 20)):
        ds = datasets.Dataset.from_dict({"sentence": [f"{split} text {i}" for i in range(n)],
                                         "label": [i % 2 for i in range(n)]}, features=features)
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                        "  - split: train\n    path: train.parquet\n"
                                        "  - split: test\n    path: test.parquet\n---\n")
    cfg = data_config(source="hub", name=str(tmp_path), text_column="sentence", splits={"train": "train"})
    records, report = prepare(cfg, seed=0)
    assert total(report) == 50
    assert {r["label"] for r in records["train"]} == {"negative", "positive"}  # ClassLabel names neg/pos mapped
    with pytest.raises(DataError, match="data.splits.validation: 'dev' is not a split of dataset"):
        prepare(data_config(source="hub", name=str(tmp_path), text_column="sentence",
                           splits={"train": "train", "validation": "dev"}), seed=0)


def test_hub_splits_kept_and_unlabelled_split_refused(tmp_path):
    """SST-2 / IMDB shape: labelled train/validation/test plus a split whose labels are -1."""
    name = _hub_like(tmp_path / "ds", {"train": 80, "validation": 20, "test": 30, "unlabelled": 10})
    cfg = data_config(source="hub", name=name, text_column="sentence",
                     splits={"train": "train", "validation": "validation", "test": "test"})
    _, report = prepare(cfg, seed=0)
    assert {s: report[s]["n"] for s in SPLITS} == {"train": 80, "validation": 20, "test": 30}
    with pytest.raises(DataError, match=r"split 'unlabelled': row 1: no label; .*data.splits"):
        prepare(data_config(source="hub", name=name, text_column="sentence"), seed=0)


def test_unreachable_hub_dataset_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unreachable = "cannot reach the Hugging Face Hub for dataset 'no-such-org/no-such-data'.*HF_HUB_OFFLINE"
    with pytest.raises(DataError, match=unreachable):
        prepare(data_config(source="hub", name="no-such-org/no-such-data"), seed=0)


def test_label_spellings_null_drops_and_rating_thresholds(tmp_path):
    path = tmp_path / "mixed.csv"
    raw = ["Positive", "pos", "1", "fresh", "NEGATIVE", "neg", "0", "rotten", "plot"] * 6
    pd.DataFrame({"text": [f"review {i}" for i in range(len(raw))], "label": raw}).to_csv(path, index=False)
    records, report = prepare(data_config(source="local", name=str(path), label_map={"plot": None}), seed=0)
    assert report["dropped"]["label_dropped"] == 6
    labelled = {r["text"]: r["label"] for rows in records.values() for r in rows}
    assert labelled["review 0"] == labelled["review 2"] == "positive" and labelled["review 6"] == "negative"
    # 1-10 star ratings into three classes: <= 4 negative, <= 6 neutral, above positive.
    stars = tmp_path / "stars.jsonl"
    stars.write_text("".join(json.dumps({"text": f"drug review {i}", "rating": i % 10 + 1}) + "\n" for i in range(100)))
    cfg = data_config(source="local", name=str(stars), label_column="rating", labels=THREE, rating_thresholds=[4, 6])
    _, report = prepare(cfg, seed=0)
    counts = {lab: sum(report[s]["labels"][lab] for s in SPLITS) for lab in THREE}
    assert counts == {"negative": 40, "neutral": 20, "positive": 40}


def test_cleaning_html_unicode_lengths_and_conflicts(tmp_path):
    path = tmp_path / "imdb_like.jsonl"
    rows = [{"text": f"Film {i} was fine.<br /><br />Really &amp; truly {'good' if i % 2 else 'bad'}.",
             "label": i % 2} for i in range(40)]
    rows += [{"text": "ﬁne ＦＩＬＭ", "label": 1}, {"text": "ok", "label": 1}, {"text": "x" * 500, "label": 0},
             {"text": "Same words, other label", "label": 0}, {"text": "same words other label!", "label": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = data_config(source="local", name=str(path), clean=dict(min_chars=3, max_chars=300, too_long="drop"))
    records, report = prepare(cfg, seed=0)
    cleaned = texts(records)
    assert "Film 1 was fine. Really & truly good." in cleaned
    assert "fine FILM" in cleaned  # NFKC folds the ligature and the full-width letters
    assert "ok" not in cleaned and report["dropped"]["too_short"] == 1
    assert report["dropped"]["too_long"] == 1
    assert report["conflicting_labels"] == 1 and report["dropped"]["duplicate"] == 1
    truncating = data_config(source="local", name=str(path), clean=dict(max_chars=300, too_long="truncate"))
    records, report = prepare(truncating, seed=0)
    assert report["changed"]["truncated"] == 1 and "x" * 300 in texts(records)
    exact = data_config(source="local", name=str(path), clean=dict(max_chars=300, too_long="drop", dedup="exact"))
    assert prepare(exact, seed=0)[1]["dropped"]["duplicate"] == 0


def test_three_class_labels_from_integers(tmp_path):
    path = tmp_path / "tweets.jsonl"
    path.write_text("".join(json.dumps({"text": f"tweet {i}", "label": i % 3}) + "\n" for i in range(90)))
    cfg = data_config(source="local", name=str(path), labels=THREE, split=dict(train=0.6, validation=0.2, test=0.2))
    records, report = prepare(cfg, seed=0)
    assert report["test"]["labels"] == {"negative": 6, "neutral": 6, "positive": 6}


def test_offline_tweets_three_class_with_confidence_filter():
    cfg = data_config(name="tweets", label_column="sentiment", labels=THREE, confidence_column="confidence",
                     min_confidence=0.6, max_train=3000, max_validation=300, max_test=600)
    records, report = prepare(cfg, seed=0)
    assert report["rows_read"] == {"all": 38158}
    # rows without a confidence value (5,460) count as not confident enough
    assert report["dropped"]["low_confidence"] > 5460
    assert all(min(report[s]["labels"].values()) > 0 for s in SPLITS)
    assert report["test"]["n"] == 600 and set(report["test"]["labels"]) == set(THREE)
    loose = data_config(name="tweets", label_column="sentiment", labels=THREE, max_train=10, max_validation=10,
                       max_test=10)
    assert prepare(loose, seed=0)[1]["dropped"].get("low_confidence") is None


def test_offline_drug_reviews_keep_their_test_split():
    cfg = data_config(name="drug_reviews", text_column="review", label_column="rating", group_column="drugName",
                     labels=THREE, splits={"train": "train", "test": "test"})
    records, report = prepare(cfg, seed=0)
    assert report["rows_read"] == {"train": 600, "test": 379}
    assert report["test"]["n"] <= 379 and report["train"]["n"] + report["validation"]["n"] <= 600
    assert not any(re.search(r"&#0?39;|&rsquo;|&quot;", t) for t in texts(records)), "entities unescaped"
    # validation is carved from train by drug; the source's own test split may share drugs with train (reported)
    assert report["overlap"]["groups"]["train_validation"] == 0
    assert report["overlap"]["groups"]["train_test"] > 0


@pytest.mark.parametrize("case,message", [
    ("missing_file", "data.name: file not found"),
    ("missing_column", "data.text_column: column 'review' not in"),
    ("unknown_label", "row 4: label 'meh' is not in the label map"),  # rows[3] is the 4th data row
    ("single_class", "only one label (['positive'])"),
    ("all_empty", "no rows left after cleaning (empty: 20)"),
    ("not_utf8", "(line 22); re-encode it as UTF-8"),  # the header is line 1, the bad row the 22nd
    ("huge_row", "row 5: text is 1,048,576 characters, over data.clean.max_chars (20,000)"),
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
    if case == "huge_row":
        rows[4]["review"] = "a" * 2**20
    if case != "missing_file":
        pd.DataFrame(rows).to_csv(path, index=False)
    if case == "not_utf8":
        path.write_bytes(path.read_bytes() + "café,pos\n".encode("latin-1"))
    cfg = data_config(source="local", name=str(path), text_column="review", label_column="stars")
    with pytest.raises(DataError, match=re.escape(message)):
        prepare(cfg, seed=0)


def test_gated_hub_dataset_says_log_in_not_offline(monkeypatch):
    """A gated dataset (mocked hub answer 403): accept the terms and log in; no offline advice."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    def refuse(self, repo_id, **kwargs):
        request = httpx.Request("GET", f"https://huggingface.co/api/datasets/{repo_id}")
        raise GatedRepoError(f"403 Client Error: cannot access gated repo {repo_id}",
                             response=httpx.Response(403, request=request))

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "dataset_info", refuse)
    with pytest.raises(DataError) as info:
        prepare(data_config(source="hub", name="acme/gated-reviews"), seed=0)
    message = str(info.value)
    assert "gated or private" in message and "hf auth login" in message and "HF_HUB_OFFLINE" not in message


def test_hub_dataset_revision_is_recorded_and_pinned(monkeypatch):
    """The commit a hub id resolves to is passed to load_dataset and written into the data report."""
    import datasets
    from huggingface_hub import HfApi

    sha = "0123456789abcdef0123456789abcdef01234567"
    seen = {}

    class Info:
        pass

    def info(self, repo_id, revision=None, **kwargs):
        result = Info()
        result.sha = sha
        return result

    def load(name, config=None, revision=None, **kwargs):
        seen["revision"] = revision
        rows = {"text": [f"review {i} was {'good' if i % 2 else 'bad'}" for i in range(40)],
                "label": ["positive" if i % 2 else "negative" for i in range(40)]}
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)})

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "dataset_info", info)
    monkeypatch.setattr(datasets, "load_dataset", load)
    _, report = prepare(data_config(source="hub", name="acme/reviews", revision="main"), seed=0)
    assert seen["revision"] == sha and report["source"]["revision"] == sha
