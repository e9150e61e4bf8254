"""The record written beside every adapter and export (`qlora_sentiment.json`): one typed object, read and
written here only. It holds everything needed to score with the model exactly as it was trained."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from qlora_sentiment.config import QuantizationConfig
from qlora_sentiment.config.schema import TextCleaning
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.problems.model import bad_input
from qlora_sentiment.core.io import write_text

RECORD_FILE = "qlora_sentiment.json"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimizerUse(_Record):
    requested: str  # train.optimizer
    used: str       # what ran (paged optimizers need CUDA; on a CPU their plain twin runs)


class ExportInfo(_Record):
    merged_from: str   # the adapter folder
    dtype: Literal["float32", "bfloat16", "float16"]  # precision of the merged weights
    # the transformers Auto class that loads the folder: a sequence classifier for both heads (the generative
    # head's label tokens become its score rows, the prompt moves into the tokenizer), except for models that
    # soft-cap their final logits (Gemma 2), whose generative head is exported as the causal LM it is
    auto_class: Literal["AutoModelForSequenceClassification", "AutoModelForCausalLM"]


class ModelRecord(_Record):
    head: Literal["generative", "classifier"]
    # sentence: one label per text; aspect_term / aspect_category: one per (text, aspect) pair (data.task);
    # records from before the aspect tasks are sentence models
    task: Literal["sentence", "aspect_term", "aspect_category"] = "sentence"
    labels: list[str]
    prompt_template: str
    chat_template: bool  # the prompt was wrapped in the model's own chat template
    max_length: int
    quantization: QuantizationConfig
    base_model: dict  # models/base/base_model.json: what the base resolved to (hub commit, fingerprint, sha256)
    optimizer: OptimizerUse
    device: str  # what trained it: "cpu" or the CUDA device's name
    trainable_parameters: int
    total_parameters: int
    global_step: int
    processes: int  # data-parallel processes that trained it (the global batch is the same for any count)
    train_loss: float | None  # mean of the logged training losses (None when no step was logged)
    eval_loss: float | None
    validation: dict[str, float]  # label accuracy and macro F1 on the validation split
    export: ExportInfo | None = None  # set in a merged export only
    # The cleaning prepare gave the training texts (data.clean), applied to every text scored. None: a record
    # from before it was recorded, whose model scores texts as given (as it always did); rebuild to add it.
    clean: TextCleaning | None = None

    @property
    def is_export(self) -> bool:
        return self.export is not None

    def clean_texts(self, texts: list[str]) -> list[str]:
        """The texts as the model saw its training texts."""
        from qlora_sentiment.config.text import clean_text

        return list(texts) if self.clean is None else [clean_text(t, self.clean) for t in texts]

    def exported(self, adapter_dir: Path, auto_class: str = "AutoModelForSequenceClassification") -> "ModelRecord":
        dtype = self.quantization.compute_dtype
        return self.model_copy(update={"export": ExportInfo(merged_from=str(adapter_dir), dtype=dtype,
                                                            auto_class=auto_class)})


def write_record(folder: str | Path, record: ModelRecord) -> None:
    write_text(Path(folder) / RECORD_FILE, record.model_dump_json(indent=2) + "\n")


def read_record(folder: str | Path) -> ModelRecord:
    """The record of an adapter or export folder, or one line saying why it cannot be read."""
    folder = Path(folder)
    path = folder / RECORD_FILE
    if not path.is_file():
        what = "no such folder" if not folder.is_dir() else f"no {RECORD_FILE}"
        raise ModelError(bad_input("not-an-adapter").format(folder=folder, what=what))
    try:
        return ModelRecord.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise ModelError(f"{path}: unreadable (not JSON: {first['msg']}); rebuild it with dvc repro") from None
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"{path}: {where}: {first['msg']}; written by another version of qlora-sentiment? "
                         "run dvc repro to rebuild it") from None
