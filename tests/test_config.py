"""params.yaml <-> typed config: the committed file loads, every bad value is named precisely."""

import copy

import pytest
import yaml

from helpers import ROOT
from qlora_sentiment.config import load_params, params_from_dict, to_dict
from qlora_sentiment.core.errors import ConfigError

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_committed_params_load_and_mirror_the_dataclasses():
    params = load_params(ROOT / "params.yaml")
    # One to one: every key of params.yaml is a field, and every field is written in params.yaml.
    def keys(d, prefix=""):
        return {f"{prefix}{k}" for k in d} | {x for k, v in d.items() if isinstance(v, dict) and k != "label_map"
                                              for x in keys(v, f"{prefix}{k}.")}
    assert keys(RAW) == keys(to_dict(params))


def test_dvc_yaml_names_only_existing_params():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for dotted in stage.get("params", []):
            node = RAW
            for part in dotted.split("."):
                assert part in node, f"stage {name} declares unknown param {dotted}"
                node = node[part]


def with_change(dotted, value):
    raw = copy.deepcopy(RAW)
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


@pytest.mark.parametrize("dotted,value,message", [
    ("train.learning_rat", 1e-4, "unknown key 'train.learning_rat'; did you mean 'learning_rate'?"),
    ("lora.rank", 8, "unknown key 'lora.rank'; known keys: ['r', 'alpha'"),
    ("lora.r", 0, "lora.r: must be > 0"),
    ("lora.r", "eight", "lora.r: expected an integer"),
    ("lora.dropout", 1.0, "lora.dropout: must be in [0, 1)"),
    ("train.learning_rate", -1.0, "train.learning_rate: must be > 0"),
    ("train.batch_size", 0, "train.batch_size: must be > 0"),
    ("train.optimizer", "adam", "train.optimizer: 'adam' is not one of"),
    ("model.head", "regression", "model.head: 'regression' is not one of ['generative', 'classifier']"),
    ("model.source", "hubb", "did you mean 'hub'?"),
    ("quantization.load_in_4bit", "yes", "quantization.load_in_4bit: expected true or false"),
    ("data.split.test", 0.5, "data.split: train + validation + test must sum to 1"),
    ("data.labels", ["bad"], "data.labels: needs 2 or 3 labels"),
    ("data.label_map", {"meh": "so-so"}, "data.label_map.meh: maps to 'so-so'"),
    ("prompt.template", "no placeholder", "prompt.template: must contain the placeholder {text}"),
    ("model.revision", "main", "model.revision: only applies to source 'hub'"),
])
def test_bad_params_are_named(dotted, value, message):
    with pytest.raises(ConfigError) as info:
        params_from_dict(with_change(dotted, value))
    assert message in str(info.value)


def test_yaml_exponent_without_dot_is_a_number():
    # PyYAML reads 2e-4 as a string; users write it that way, so it must still be a float.
    assert params_from_dict(with_change("train.learning_rate", "2e-4")).train.learning_rate == 2e-4


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_schema_holds_no_defaults_so_conf_is_the_only_source():
    from qlora_sentiment.config import Params

    def walk(model, prefix=""):
        for name, field in model.model_fields.items():
            assert field.is_required(), f"{prefix}{name} has a default in the schema; conf/ must be the only source"
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                walk(sub, f"{prefix}{name}.")

    walk(Params)


@pytest.mark.parametrize("text,message", [
    ("", "empty; it must hold every section"),
    ("seed: 1\n", "params: missing runtime, model, quantization"),
])
def test_empty_or_partial_params_name_what_is_missing(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_params(path)


@pytest.mark.parametrize("dotted,value,message", [
    ("train.learning_rate", float("inf"), "train.learning_rate: must be a finite number"),
    ("lora.alpha", float("nan"), "lora.alpha: must be a finite number"),
    ("seed", 2**32, "seed: must be <= 4294967295"),
    ("seed", -1, "seed: must be >= 0"),
    ("prompt.template", "{text[0]}", "only {text} and {labels} may appear in braces (found {text[0]})"),
    ("prompt.template", "{labels.x} {text}", "(found {labels.x})"),
    ("prompt.template", "{text} {", "prompt.template: not a valid format string"),
    ("data.labels", ["", "positive"], "data.labels[0]: must not be empty or blank"),
    ("lora.target_modules", [], "lora.target_modules: must name modules"),
    ("train.max_steps", 0, "train.max_steps: must be -1 (use epochs) or > 0"),
])
def test_values_that_would_only_fail_later_fail_at_load(dotted, value, message):
    with pytest.raises(ConfigError) as info:
        params_from_dict(with_change(dotted, value))
    assert message in str(info.value)


def test_params_that_are_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"seed: 42", b"seed: 42 # caf\xe9"))
    with pytest.raises(ConfigError, match=r"not UTF-8 \(byte 0xe9 on line 1\)"):
        load_params(path)


def test_every_preset_composes_into_valid_params():
    from qlora_sentiment.config import compose

    for preset in sorted((ROOT / "conf/experiment").glob("*.yaml")):
        params_from_dict(compose(ROOT / "conf", [f"experiment={preset.stem}"]))
    for data in sorted(p for p in (ROOT / "conf/data").glob("*.yaml") if not p.stem.startswith("_")):
        params_from_dict(compose(ROOT / "conf", [f"data={data.stem}"]))
