"""Typed mirror of params.yaml: types, ranges and docs, and no default values.

conf/ is the one source of values (Hydra composes it into params.yaml); every field here is required, so an
empty or partial params.yaml is an error naming what is missing instead of a second, silent recipe. Loading
and the one-line error messages live in `load.py`.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from qlora_sentiment.core.cpu_matmul import CPU_MATMULS
from qlora_sentiment.problems.params import bad_input

LABEL_SETS = {2: ["negative", "positive"], 3: ["negative", "neutral", "positive"]}
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
OPTIMIZERS = ("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd")
TEMPLATE_FIELDS = ("text", "labels", "aspect")
TASKS = ("sentence", "aspect_term", "aspect_category")


def _number(value):
    # PyYAML reads `2e-4` (no dot) as a string; users write it that way, so accept numeric spellings.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _string_keys(value):
    # YAML keys such as `1:` or `true:` arrive as int/bool; label_map compares raw values as strings.
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


Float = Annotated[float, BeforeValidator(_number)]
PositiveInt = Annotated[int, Field(gt=0)]
# numpy's and torch's seeding both accept [0, 2**32 - 1]; outside it they fail only when the stage runs
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
LabelName = Annotated[str, Field(min_length=1, pattern=r"\S")]


class Section(BaseModel):
    # strict: no "8" for 8 or 1 for true; no inf/nan anywhere (they would only fail mid-training)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class RuntimeConfig(Section):
    # auto: CUDA when a usable GPU is there, else the CPU; cuda: stop with the reason when there is none (the GPU
    # presets: a 7B model never quietly runs on a CPU); cpu: the CPU even beside a GPU
    device: Literal["auto", "cuda", "cpu"]
    torch_threads: PositiveInt  # CPU threads for the whole stage (split between processes)
    num_processes: PositiveInt  # training processes (accelerate launch): GPUs, or gloo on CPU cores
    # ddp: each process holds the whole (4-bit) model; fsdp: the 4-bit base is sharded across the processes
    # (FSDP + QLoRA: bnb_4bit_quant_storage = compute dtype), for models too large for one GPU
    strategy: Literal["ddp", "fsdp"]
    # avx2: the CPU math libraries capped at AVX2 (core/cpu_isa.py), so every x86-64 machine of a kind writes the
    # same bytes (dvc.lock); native: whatever this CPU has (AVX-512 rounds differently: other weights, other hashes)
    cpu_isa: Literal["avx2", "native"]
    # onednn: the float32 matrix products of train, baseline and evaluate in oneDNN, capped by cpu_isa
    # (core/cpu_matmul.py: MKL's vendor-neutral branch has no AVX2 kernels, training 1.7x slower); mkl: torch's own
    cpu_matmul: Literal[CPU_MATMULS]

    @model_validator(mode="after")
    def _fsdp_needs_processes(self):
        if self.strategy == "fsdp" and self.num_processes < 2:
            raise ValueError("strategy: fsdp shards the model across processes; set runtime.num_processes to the "
                             "number of GPUs (>= 2), or use ddp")
        return self


class ModelConfig(Section):
    source: Literal["offline", "hub", "local"]
    # offline: a packaged model (model.base.OFFLINE_MODELS); hub: a repo id; local: a folder under models/local/
    name: Annotated[str, Field(min_length=1, pattern=r"\S")]
    revision: str | None  # hub only: branch, tag or commit; the resolved commit is recorded
    head: Literal["generative", "classifier"]

    @model_validator(mode="after")
    def _revision_only_for_hub(self):
        if self.revision is not None and self.source != "hub":
            raise ValueError(f"revision: only applies to source 'hub' (source is '{self.source}'); set it to null")
        return self


class QuantizationConfig(Section):
    load_in_4bit: bool  # real bitsandbytes 4-bit layers (CPU and CUDA); false = full-precision LoRA
    quant_type: Literal["nf4", "fp4"]
    double_quant: bool
    # auto: bfloat16 where the hardware has it (CPU with AVX512-BF16/AMX, Ampere+ GPU), else float32 (CPU) or
    # float16 (older GPU); the stages resolve it and record what ran
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"]


class LoraConfig(Section):
    r: Annotated[int, Field(gt=0, le=4096)]
    alpha: Annotated[Float, Field(gt=0)]
    dropout: Annotated[Float, Field(ge=0, lt=1)]
    target_modules: str | list[Annotated[str, Field(min_length=1)]]
    # LoRA on the last N transformer blocks only: backward stops there, so each step is cheaper
    last_n_layers: PositiveInt | None

    @model_validator(mode="after")
    def _check(self):
        if not self.target_modules:
            raise ValueError("target_modules: must name modules or be 'all-linear'")
        if self.last_n_layers is not None and not isinstance(self.target_modules, list):
            raise ValueError(bad_input("last-n-layers").format())
        return self


class SplitConfig(Section):
    train: Annotated[Float, Field(gt=0, lt=1)]
    validation: Annotated[Float, Field(gt=0, lt=1)]
    test: Annotated[Float, Field(gt=0, lt=1)]

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.validation + self.test
        if abs(total - 1) > 1e-6:
            raise ValueError(bad_input("split-fractions").format(total=total))
        return self


class TextCleaning(Section):
    """The part of data.clean that changes a text (config/text.py applies it; whitespace is always collapsed):
    recorded with the model, so that every entry point scores texts cleaned as its training data was."""

    html: bool  # strip tags and unescape entities (IMDB's <br />, drug reviews' &#039;)
    unicode: Literal["NFKC", "NFC", "none"]  # NFKC also folds ligatures, full-width letters, "…"
    format_chars: Literal["remove", "keep"]  # remove: the invisible characters (config/text.py: BOM, NUL, ...)


class CleanConfig(TextCleaning):
    min_chars: PositiveInt  # shorter texts are dropped and counted
    max_chars: PositiveInt  # longer texts are handled by too_long
    too_long: Literal["error", "truncate", "drop"]
    dedup: Literal["near", "exact", "none"]  # near: equal after case folding and dropping punctuation/spaces

    @model_validator(mode="after")
    def _order(self):
        if self.max_chars < self.min_chars:
            raise ValueError(f"max_chars: must be >= min_chars ({self.min_chars}) (got {self.max_chars})")
        return self

    @property
    def text(self) -> TextCleaning:
        return TextCleaning(**self.model_dump(include=set(TextCleaning.model_fields)))


class DataConfig(Section):
    # sentence: one label per text; aspect_term: one per (text, aspect) where the aspect is a term of the text
    # ("the service was slow": service); aspect_category: the aspect is a category the text need not spell out
    task: Literal[TASKS]
    source: Literal["offline", "hub", "local"]
    # offline: a packaged corpus (data.sources.OFFLINE_CORPORA); hub: a dataset id or a save_to_disk folder;
    # local: a csv/tsv/jsonl/json/parquet file under data/raw/, or a folder there with data.splits naming files
    name: Annotated[str, Field(min_length=1)]
    config: str | None  # hub configuration, e.g. "sst2" for glue
    revision: str | None  # hub only: branch, tag or commit; the resolved commit is recorded in the report
    # The source's own splits (hub split names, corpus split names or file names in the `name` folder);
    # splits left out are carved from train by data.split; null = pool everything
    splits: dict[Literal["train", "validation", "test"], str] | None
    text_column: str
    label_column: str
    # the aspect tasks' aspect column (csv/jsonl/parquet/hub); SemEval XML and $T$ files name the aspect themselves
    aspect_column: str | None
    # rows sharing a group never straddle two carved splits; the aspect tasks group by sentence when it is null
    group_column: str | None
    labels: list[LabelName]
    # raw value -> label name (or null: drop those rows), on top of the built-in spellings
    label_map: Annotated[dict[str, str | None], BeforeValidator(_string_keys)]
    # numeric ratings -> labels: inclusive upper bounds of every label but the last, e.g. [4, 6] on 1-10 stars
    rating_thresholds: list[Float] | None
    confidence_column: str | None  # annotator agreement column, with min_confidence
    min_confidence: Float | None  # rows below it (or without a value) are dropped and counted
    clean: CleanConfig
    split: SplitConfig
    max_train: PositiveInt | None
    max_validation: PositiveInt | None
    max_test: PositiveInt | None
    balance: bool  # undersample train to the rarest label (seeded)

    @model_validator(mode="after")
    def _check(self):
        if len(self.labels) not in (2, 3):
            raise ValueError(bad_input("label-count").format(labels=self.labels))
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels: has duplicates ({self.labels})")
        for raw, label in self.label_map.items():
            if label is not None and label not in self.labels:
                raise ValueError(f"label_map.{raw}: maps to '{label}', not one of {self.labels} (or null to drop)")
        if self.task != "sentence" and self.balance:
            raise ValueError(bad_input("aspect-balance").format(task=self.task))
        if self.task != "sentence" and self.aspect_column is None:
            raise ValueError(bad_input("aspect-column-null").format(task=self.task))
        if self.splits is not None and "train" not in self.splits:
            raise ValueError("splits: needs a train entry (the others can be carved from it)")
        if self.revision is not None and self.source != "hub":
            raise ValueError(f"revision: only applies to source 'hub' (source is '{self.source}'); set it to null")
        t = self.rating_thresholds
        if t is not None:
            if len(t) != len(self.labels) - 1:
                raise ValueError(f"rating_thresholds: needs {len(self.labels) - 1} bounds for "
                                 f"{len(self.labels)} labels (got {t})")
            if t != sorted(t) or len(set(t)) != len(t):
                raise ValueError(f"rating_thresholds: must increase (got {t})")
        if (self.confidence_column is None) != (self.min_confidence is None):
            raise ValueError("min_confidence: set data.confidence_column and data.min_confidence together "
                             "(or both null)")
        return self


def _template_fields(template: str, key: str, aspect: bool) -> None:
    """A template's placeholders: {text} always, {labels} optional, {aspect} in the aspect template only (after
    {text}: the review is cut to fit, never the aspect)."""
    try:
        parsed = [(literal, f) for literal, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{key}: not a valid format string ({exc}); write literal braces as {{{{ }}}}")
    fields = [f for _, f in parsed]
    allowed = TEMPLATE_FIELDS if aspect else ("text", "labels")
    for name in fields:
        if name not in allowed:  # also rejects {text[0]}, {labels.x}, {} and {0}
            spelled = " and ".join("{" + f + "}" for f in allowed)
            raise ValueError(bad_input("template-field").format(key=key, allowed=spelled, name=name))
    for name in ("text", "aspect") if aspect else ("text",):
        if name not in fields:
            raise ValueError(f"{key}: must contain the placeholder {{{name}}}")
    if aspect and fields.index("aspect") < fields.index("text"):
        raise ValueError(bad_input("aspect-before-text").format(key=key))
    before = {f: literal for literal, f in parsed}
    if aspect and before["text"].endswith(" ") != before["aspect"].endswith(" "):
        # the export's tokenizer prepends one space to both texts of the pair: it cannot spell them differently
        raise ValueError(bad_input("aspect-space").format(key=key))


class PromptConfig(Section):
    # The generative head learns to answer " <label>" after this prompt; {text} is the review, {labels} the
    # label names ("negative or positive")
    template: str
    # the prompt of the aspect tasks (data.task aspect_term / aspect_category): the template's fields and {aspect}
    aspect_template: str
    # true: the rendered template becomes the user turn of the model's own chat template (with the assistant
    # header after it), as instruct models were tuned to see; false: the template alone
    chat_template: bool

    @model_validator(mode="after")
    def _fields(self):
        _template_fields(self.template, "template", aspect=False)
        _template_fields(self.aspect_template, "aspect_template", aspect=True)
        return self

    def for_task(self, task: str) -> str:
        """The template a model of `task` reads (the baseline's too, whatever the head)."""
        return self.template if task == "sentence" else self.aspect_template


class TrainConfig(Section):
    epochs: Annotated[Float, Field(gt=0)]
    max_steps: Annotated[int, Field(ge=-1)]  # > 0 overrides epochs; -1 uses epochs
    batch_size: PositiveInt
    grad_accum: PositiveInt
    learning_rate: Annotated[Float, Field(gt=0, lt=1)]
    scheduler: Literal[SCHEDULERS]
    warmup_steps: Annotated[int, Field(ge=0)]
    weight_decay: Annotated[Float, Field(ge=0)]
    optimizer: Literal[OPTIMIZERS]
    max_length: PositiveInt
    # group_by_length batches reviews of similar length (less padding); random is the plain shuffle
    sampling: Literal["random", "group_by_length"]
    gradient_checkpointing: bool
    save_steps: PositiveInt
    logging_steps: PositiveInt
    # the validation curve (DVCLive, `dvc plots show`): loss and accuracy on the first validation_subset reviews of
    # the validation split at validation_points evenly spaced steps, the last at the final step; 0 points = none
    validation_points: Annotated[int, Field(ge=0, le=100)]
    validation_subset: PositiveInt

    @model_validator(mode="after")
    def _steps(self):
        if self.max_steps == 0:
            raise ValueError("max_steps: must be -1 (use epochs) or > 0")
        return self


class EvalConfig(Section):
    batch_size: PositiveInt


class Params(Section):
    seed: Seed
    runtime: RuntimeConfig
    model: ModelConfig
    quantization: QuantizationConfig
    lora: LoraConfig
    data: DataConfig
    prompt: PromptConfig
    train: TrainConfig
    eval: EvalConfig

    @property
    def prompt_template(self) -> str:
        return self.prompt.for_task(self.data.task)
