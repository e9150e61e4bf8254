"""Typed mirror of params.yaml, validated at load time.

Every section of params.yaml is a dataclass below with the same keys. Loading rejects unknown keys (with a
"did you mean"), wrong types and out-of-range values, naming the dotted key, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

LABEL_SETS = {2: ["negative", "positive"], 3: ["negative", "neutral", "positive"]}


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"params: {key}: {message}")


@dataclass(frozen=True)
class RuntimeConfig:
    torch_threads: int = 2  # CPU threads for the whole stage (split between processes)
    # data-parallel training processes, started by `accelerate launch`: one per GPU, or gloo on CPU cores
    num_processes: int = 1

    def validate(self, key: str) -> None:
        _check(self.torch_threads >= 1, f"{key}.torch_threads", f"must be >= 1 (got {self.torch_threads})")
        _check(self.num_processes >= 1, f"{key}.num_processes", f"must be >= 1 (got {self.num_processes})")


@dataclass(frozen=True)
class ModelConfig:
    source: Literal["offline", "hub", "local"] = "offline"
    # offline: a packaged model (see base_model.OFFLINE_MODELS); hub: a repo id; local: a folder path
    name: str = "smollm2-135m-instruct"
    revision: str | None = None  # hub only: branch, tag or commit; the resolved commit is recorded
    head: Literal["generative", "classifier"] = "generative"

    def validate(self, key: str) -> None:
        _check(bool(self.name.strip()), f"{key}.name", "must not be empty")
        _check(self.revision is None or self.source == "hub", f"{key}.revision",
               f"only applies to source 'hub' (source is '{self.source}'); set it to null")


@dataclass(frozen=True)
class QuantizationConfig:
    load_in_4bit: bool = True
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    # float32 on CPU (no bf16 instructions here), float16/bfloat16 on GPUs
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def validate(self, key: str) -> None:
        pass


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    # LoRA on the last N transformer blocks only: backward stops there, so each step is cheaper.
    last_n_layers: int | None = None

    def validate(self, key: str) -> None:
        _check(self.last_n_layers is None or self.last_n_layers > 0, f"{key}.last_n_layers",
               f"must be > 0 or null (got {self.last_n_layers})")
        _check(self.last_n_layers is None or isinstance(self.target_modules, list), f"{key}.last_n_layers",
               "needs lora.target_modules as a list of module names (PEFT cannot restrict 'all-linear' to layers)")
        _check(self.r > 0, f"{key}.r", f"must be > 0 (got {self.r})")
        _check(self.alpha > 0, f"{key}.alpha", f"must be > 0 (got {self.alpha})")
        _check(0 <= self.dropout < 1, f"{key}.dropout", f"must be in [0, 1) (got {self.dropout})")
        _check(bool(self.target_modules), f"{key}.target_modules", "must name modules or be 'all-linear'")


@dataclass(frozen=True)
class SplitConfig:
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1

    def validate(self, key: str) -> None:
        for name in ("train", "validation", "test"):
            value = getattr(self, name)
            _check(0 < value < 1, f"{key}.{name}", f"must be in (0, 1) (got {value})")
        total = self.train + self.validation + self.test
        _check(abs(total - 1) < 1e-6, key, f"train + validation + test must sum to 1 (got {total:g})")


@dataclass(frozen=True)
class CleanConfig:
    html: bool = True  # strip tags and unescape entities (IMDB's <br />, drug reviews' &#039;)
    unicode: Literal["NFKC", "NFC", "none"] = "NFKC"  # NFKC also folds ligatures, full-width letters, "…"
    min_chars: int = 1  # shorter texts are dropped and counted
    max_chars: int = 20000  # longer texts are handled by too_long
    too_long: Literal["error", "truncate", "drop"] = "error"
    # near: texts equal after case folding and dropping punctuation/spaces count as duplicates; exact: same text
    dedup: Literal["near", "exact", "none"] = "near"

    def validate(self, key: str) -> None:
        _check(self.min_chars >= 1, f"{key}.min_chars", f"must be >= 1 (got {self.min_chars})")
        _check(self.max_chars >= self.min_chars, f"{key}.max_chars",
               f"must be >= min_chars ({self.min_chars}) (got {self.max_chars})")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["offline", "hub", "local"] = "offline"
    # offline: a packaged corpus (see sources.OFFLINE_CORPORA); hub: a dataset id or a folder saved with
    # save_to_disk; local: a csv/tsv/jsonl/json/parquet file, or a folder with data.splits naming its files
    name: str = "rotten_tomatoes"
    config: str | None = None  # hub configuration, e.g. "sst2" for glue
    # The source's own splits, e.g. {train: train, test: test} (hub split names, corpus split names or file names
    # in the `name` folder). Splits left out are carved from train by data.split; null = pool everything.
    splits: dict[str, str] | None = None
    text_column: str = "text"
    label_column: str = "label"
    group_column: str | None = None  # rows sharing a group never straddle two carved splits
    labels: list[str] = field(default_factory=lambda: list(LABEL_SETS[2]))
    # raw value -> label name (or null: drop those rows), on top of the built-in spellings
    label_map: dict[str, str | None] = field(default_factory=dict)
    # numeric ratings -> labels: upper bounds (inclusive) of every label but the last, e.g. [4, 6] on 1-10 stars
    rating_thresholds: list[float] | None = None
    confidence_column: str | None = None  # annotator agreement column, with min_confidence
    min_confidence: float | None = None  # rows below it (or without a value) are dropped and counted
    clean: CleanConfig = field(default_factory=CleanConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    max_train: int | None = None
    max_validation: int | None = None
    max_test: int | None = None
    balance: bool = False  # undersample train to the rarest label (seeded)

    def validate(self, key: str) -> None:
        _check(len(self.labels) in (2, 3), f"{key}.labels", f"needs 2 or 3 labels (got {self.labels})")
        _check(len(set(self.labels)) == len(self.labels), f"{key}.labels", "has duplicates")
        for raw, label in self.label_map.items():
            _check(label is None or label in self.labels, f"{key}.label_map.{raw}",
                   f"maps to '{label}', not one of {self.labels} (or null to drop)")
        for name in ("max_train", "max_validation", "max_test"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"{key}.{name}", f"must be > 0 or null (got {value})")
        if self.splits is not None:
            unknown = sorted(set(self.splits) - {"train", "validation", "test"})
            _check(not unknown, f"{key}.splits", f"keys must be train, validation, test (got {unknown})")
            _check("train" in self.splits, f"{key}.splits", "needs a train entry (the others can be carved from it)")
        if self.rating_thresholds is not None:
            t = self.rating_thresholds
            _check(len(t) == len(self.labels) - 1, f"{key}.rating_thresholds",
                   f"needs {len(self.labels) - 1} bounds for {len(self.labels)} labels (got {t})")
            _check(t == sorted(t) and len(set(t)) == len(t), f"{key}.rating_thresholds", f"must increase (got {t})")
        _check((self.confidence_column is None) == (self.min_confidence is None), f"{key}.min_confidence",
               "set data.confidence_column and data.min_confidence together (or both null)")


@dataclass(frozen=True)
class PromptConfig:
    # The generative head learns to answer " <label>" after this prompt; {text} is the review.
    template: str = (
        "### Instruction:\nClassify the sentiment of this movie review as {labels}.\n\n"
        "### Review:\n{text}\n\n### Sentiment:"
    )

    def validate(self, key: str) -> None:
        _check("{text}" in self.template, f"{key}.template", "must contain the placeholder {text}")
        try:
            self.template.format(text="", labels="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"params: {key}.template: only {{text}} and {{labels}} may appear in braces ({exc})")


SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
OPTIMIZERS = ("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-4
    scheduler: str = "cosine"
    warmup_steps: int = 10
    weight_decay: float = 0.0
    optimizer: str = "adamw_torch"
    max_length: int = 128
    # group_by_length batches reviews of similar length (less padding); random is the plain shuffle
    sampling: Literal["random", "group_by_length"] = "group_by_length"
    gradient_checkpointing: bool = False
    save_steps: int = 50
    logging_steps: int = 5

    def validate(self, key: str) -> None:
        _check(self.epochs > 0, f"{key}.epochs", f"must be > 0 (got {self.epochs})")
        _check(self.max_steps == -1 or self.max_steps > 0, f"{key}.max_steps", "must be -1 (use epochs) or > 0")
        for name in ("batch_size", "grad_accum", "max_length", "save_steps", "logging_steps"):
            value = getattr(self, name)
            _check(value > 0, f"{key}.{name}", f"must be > 0 (got {value})")
        _check(self.learning_rate > 0, f"{key}.learning_rate", f"must be > 0 (got {self.learning_rate})")
        _check(self.warmup_steps >= 0, f"{key}.warmup_steps", f"must be >= 0 (got {self.warmup_steps})")
        _check(self.weight_decay >= 0, f"{key}.weight_decay", f"must be >= 0 (got {self.weight_decay})")
        _check(self.scheduler in SCHEDULERS, f"{key}.scheduler", f"'{self.scheduler}' is not one of {SCHEDULERS}")
        _check(self.optimizer in OPTIMIZERS, f"{key}.optimizer", f"'{self.optimizer}' is not one of {OPTIMIZERS}")


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 16

    def validate(self, key: str) -> None:
        _check(self.batch_size > 0, f"{key}.batch_size", f"must be > 0 (got {self.batch_size})")


@dataclass(frozen=True)
class Params:
    seed: int = 42
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, key: str = "") -> None:
        pass  # sections validate themselves as they are built


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` as type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"params: {key}: must be a mapping of {[f.name for f in dataclasses.fields(tp)]}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"params: {key}: expected {' or '.join(_type_name(o) for o in options)} (got {value!r})")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"params: {key}: '{value}' is not one of {list(allowed)}{hint}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"params: {key}: expected a list (got {value!r})")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"params: {key}: expected a mapping (got {value!r})")
        return {str(k): _coerce(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params: {key}: expected true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params: {key}: expected an integer (got {value!r})")
        return value
    if tp is float:
        # PyYAML reads `2e-4` (no dot) as a string; accept any numeric spelling.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"params: {key}: expected a number (got {value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params: {key}: expected a string (got {value!r})")
        return value
    raise TypeError(f"unsupported config type {tp} at {key}")


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {names}"
            raise ConfigError(f"params: unknown key '{dotted}'{hint}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    obj = cls(**kwargs)
    obj.validate(prefix)
    return obj


def params_from_dict(raw: dict | None) -> Params:
    return _build(Params, raw or {}, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (seed, model, data, ...)")
    return params_from_dict(raw)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)
