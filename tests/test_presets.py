"""conf/ (Hydra, composed by DVC on `dvc exp run -S`): params.yaml is its composition, and every preset works.

Hub presets cannot reach the hub here, so each runs on a dataset saved locally in the shape the hub serves it
(same columns, ClassLabel names and splits, unlabelled splits included) through the same loader.
"""

import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT
from qlora_sentiment.config import params_from_dict
from qlora_sentiment.data.prepare import SPLITS, prepare

sys.path.insert(0, str(ROOT / "tools"))
from compose_params import compose

PRESETS = sorted(p.stem for p in (ROOT / "conf/data").glob("*.yaml") if not p.stem.startswith("_"))

# preset -> (text column, extra columns, label names, {split: rows}); -1 labels where the hub has none
HUB_SHAPES = {
    "sst2": ("sentence", {"idx": 0}, ["negative", "positive"], {"train": 60, "validation": 20, "test": -10}),
    "imdb": ("text", {}, ["neg", "pos"], {"train": 60, "test": 30, "unsupervised": -10}),
    "rotten_tomatoes_hub": ("text", {}, ["neg", "pos"], {"train": 60, "validation": 20, "test": 20}),
    "yelp_polarity": ("text", {}, ["1", "2"], {"train": 60, "test": 20}),
    "amazon_polarity": ("content", {"title": "a title"}, ["negative", "positive"], {"train": 60, "test": 20}),
    "tweet_eval": ("text", {}, ["negative", "neutral", "positive"], {"train": 60, "validation": 21, "test": 21}),
}


def composed(*overrides):
    return params_from_dict(yaml.safe_load(compose(list(overrides))))


def test_params_yaml_is_the_composition_of_conf():
    assert (ROOT / "params.yaml").read_text() == compose([]), "params.yaml is stale: python tools/compose_params.py"
    assert "enabled = true" in (ROOT / ".dvc/config").read_text().split("[hydra]")[1]


def test_every_hub_preset_has_a_shape_test():
    hub = [p for p in PRESETS if yaml.safe_load((ROOT / f"conf/data/{p}.yaml").read_text()).get("source") == "hub"]
    assert sorted(hub) == sorted(HUB_SHAPES)


def _save_hub_shaped(folder: Path, text: str, extra: dict, names: list[str], splits: dict) -> str:
    import datasets

    features = {text: datasets.Value("string"), "label": datasets.ClassLabel(names=names),
                **{k: datasets.Value("int32" if isinstance(v, int) else "string") for k, v in extra.items()}}
    parts = {}
    for split, n in splits.items():
        rows = abs(n)
        # A sentiment word per label, so every split holds distinct, labelled texts.
        data = {text: [f"{split} example {i} is {names[i % len(names)]}" for i in range(rows)],
                "label": [-1 if n < 0 else i % len(names) for i in range(rows)],
                **{k: [v] * rows for k, v in extra.items()}}
        parts[split] = datasets.Dataset.from_dict(data, features=datasets.Features(features))
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    return str(folder)


@pytest.mark.parametrize("preset", sorted(HUB_SHAPES))
def test_hub_preset_on_a_dataset_of_its_shape(preset, tmp_path):
    text, extra, names, splits = HUB_SHAPES[preset]
    params = composed(f"data={preset}")
    assert params.data.source == "hub"
    local = params.data.model_copy(update={"name": _save_hub_shaped(tmp_path / preset, text, extra, names, splits)})
    records, report = prepare(local, seed=0)
    for ours, theirs in params.data.splits.items():
        assert report["rows_read"][ours] == abs(splits[theirs]), (ours, theirs)
        assert all(r["text"].startswith(f"{theirs} example") for r in records[ours])
    mapped = {r["text"].rsplit(" ", 1)[1]: r["label"] for rows in records.values() for r in rows}
    assert sorted(set(mapped.values())) == sorted(params.data.labels)
    assert mapped[names[0]] == "negative" and mapped[names[-1]] == "positive"
    assert all(report[s]["n"] > 0 for s in SPLITS)


@pytest.mark.parametrize("preset", ["rotten_tomatoes", "tweets", "drug_reviews"])
def test_offline_presets_prepare_for_real(preset):
    params = composed(f"data={preset}")
    records, report = prepare(params.data, params.seed)
    assert all(report[s]["n"] > 0 for s in SPLITS)
    assert {r["label"] for r in records["test"]} == set(params.data.labels)


def test_three_class_experiment_switches_data_and_prompt():
    params = composed("experiment=tweets_3class")
    assert params.data.name == "tweets" and params.data.labels == ["negative", "neutral", "positive"]
    assert "tweet" in params.prompt.template
    # the recipe its figures in docs/data.md were measured with; the rest of train follows the default
    assert (params.lora.dropout, params.train.learning_rate) == (0.05, 2e-4)
    assert params.train.model_copy(update={"learning_rate": composed().train.learning_rate}) == composed().train
    # any key still overrides on top of a preset, as with dvc exp run -S
    assert composed("experiment=tweets_3class", "train.learning_rate=1e-4").train.learning_rate == 1e-4


@pytest.mark.slow
def test_encoder_recipe_trains_the_offline_minilm_in_4bit(tmp_path, monkeypatch):
    """The encoder preset for real: offline MiniLM, NF4 layers, LoRA r=8, classification head, a few steps."""
    from qlora_sentiment.model.base import load_ref, materialize
    from qlora_sentiment.core.runtime import setup_stage
    from qlora_sentiment.evaluation.analysis import predict_split
    from qlora_sentiment.model.adapter import load_scorer
    from qlora_sentiment.training.outputs import save_adapter
    from qlora_sentiment.training.run import train

    monkeypatch.chdir(tmp_path)  # DVCLive looks at the git repo of the working directory
    params = composed("experiment=encoder_minilm", "train.max_steps=6", "train.logging_steps=1",
                      "data.max_train=96", "data.max_validation=32", "data.max_test=32", "runtime.torch_threads=1")
    _, params = setup_stage(params, threads=1)
    info = materialize(params.model, tmp_path / "base")
    assert info["upstream"] == "sentence-transformers/all-MiniLM-L6-v2" and len(info["folder_fingerprint"]) == 64
    records, _ = prepare(params.data, params.seed)
    result = train(params, load_ref(tmp_path / "base"), records["train"], records["validation"],
                   tmp_path / "checkpoints")
    save_adapter(result.model, result.tokenizer, tmp_path / "adapter", result.record)
    assert type(result.model.base_model.model).__name__ == "BertForSequenceClassification"
    assert any(type(m).__name__ == "Linear4bit" for m in result.model.modules()), "no real 4-bit layers"
    assert 0 < result.record.trainable_parameters < 0.1 * result.record.total_parameters
    scorer = load_scorer(tmp_path / "adapter", tmp_path / "base")
    predictions = predict_split(scorer, records["test"], batch_size=16)
    assert [p["id"] for p in predictions] == [r["id"] for r in records["test"]]
    # the reloaded adapter scores validation exactly as train recorded it
    validation = predict_split(scorer, records["validation"], batch_size=16)
    hits = sum(p["predicted"] == p["label"] for p in validation) / len(validation)
    assert result.record.validation["accuracy"] == pytest.approx(hits)
