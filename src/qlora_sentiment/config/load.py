"""Read params.yaml (or compose conf/ with Hydra) into the typed Params, with one-line errors.

Every error names the dotted key and says what is wrong; unknown keys and choices get a "did you mean".
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from qlora_sentiment.config.schema import Params
from qlora_sentiment.core.errors import ConfigError
from qlora_sentiment.problems.params import bad_input

MAX_MISSING_SHOWN = 12


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema class that holds the field at `loc` (None below a list or dict)."""
    model: Any = Params
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _dotted(loc: tuple) -> str:
    """params loc without pydantic's union tags ('str', 'list[str]', 'function-before[...]')."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]"
        elif "[" in part or part in ("str", "int", "float", "bool", "none"):
            continue
        else:
            parts.append(part)
    return ".".join(parts)


def _describe(error: dict) -> str:
    """One line for one pydantic error, in the project's words."""
    kind, loc, value, ctx = error["type"], error["loc"], error.get("input"), error.get("ctx") or {}
    key = _dotted(loc)
    if kind == "extra_forbidden":
        model = _model_at(loc)
        names = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {names}"
        return f"unknown key '{key}'{hint}"
    if kind == "literal_error":
        allowed = [a.strip().strip("'") for a in ctx.get("expected", "").replace(" or ", ", ").split(", ")]
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{key}: '{value}' is not one of {allowed}{hint}"
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        head = message.split(": ", 1)[0]
        model = _model_at(loc + ("_",))
        if model and head.split(".")[0] in model.model_fields:
            return f"{key}.{message}" if key else message
        return f"{key}: {message}" if key else message
    expected = {
        "int_type": "expected an integer", "int_from_float": "expected an integer",
        "bool_type": "expected true or false",
        "float_type": "expected a number", "string_type": "expected a string", "list_type": "expected a list",
        "dict_type": "expected a mapping", "model_type": "must be a mapping of keys",
        "finite_number": "must be a finite number (no .inf or .nan)",
        "string_too_short": "must not be empty or blank", "string_pattern_mismatch": "must not be empty or blank",
    }
    if kind in expected:
        return f"{key}: {expected[kind]} (got {value!r})"
    bounds = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
              "less_than_equal": ("le", "<=")}
    if kind in bounds:
        name, sign = bounds[kind]
        return f"{key}: must be {sign} {ctx[name]} (got {value!r})"
    return f"{key}: {error['msg']} (got {value!r})"


def _range(error: dict) -> str | None:
    # lora.dropout reads better as one interval than as two separate bounds
    if _dotted(error["loc"]) == "lora.dropout":
        return bad_input("lora-dropout").format(value=error.get("input"))
    return None


def params_from_dict(raw: dict | None) -> Params:
    """Params from a params.yaml mapping, or ConfigError naming the first problem (all missing keys at once)."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        missing = [_dotted(e["loc"]) for e in errors if e["type"] == "missing"]
        others = [e for e in errors if e["type"] != "missing"]
        if others:
            raise ConfigError(f"params: {_range(others[0]) or _describe(others[0])}") from None
        shown = ", ".join(missing[:MAX_MISSING_SHOWN]) + (f" and {len(missing) - MAX_MISSING_SHOWN} more"
                                                          if len(missing) > MAX_MISSING_SHOWN else "")
        raise ConfigError(bad_input("params-partial").format(keys=shown)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(bad_input("params-missing").format(path=path))
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(bad_input("params-not-utf8").format(path=path, byte=data[exc.start], line=line)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(bad_input("params-yaml").format(path=path, where=where, reason=problem)) from None
    if raw is None:
        raise ConfigError(bad_input("params-empty").format(path=path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (seed, model, data, ...)")
    return params_from_dict(raw)


def compose(conf_dir: str | Path, overrides: list[str] = ()) -> dict:
    """conf/ composed by Hydra's compose API with `dvc exp run -S`-style overrides, resolved to plain data."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def to_yaml(raw: dict) -> str:
    """params.yaml text, as DVC writes it for `dvc exp run -S` (OmegaConf's YAML)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(raw))


def to_dict(params: BaseModel) -> dict:
    return params.model_dump(mode="python")
