"""Load a trained adapter (or the untuned base, for the baseline) as a LabelScorer, quantized exactly as in
training."""

from __future__ import annotations

from pathlib import Path

from qlora_sentiment.config import Params
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.model.base import BaseRef, load_ref, ref_from_info
from qlora_sentiment.model.loading import head_from_adapter, load_model, load_tokenizer, peft_quietly
from qlora_sentiment.model.record import ModelRecord, read_record
from qlora_sentiment.model.scoring import LabelScorer


def adapter_base(adapter_dir: Path, record: ModelRecord, base_dir: str | Path | None) -> BaseRef:
    """The base the adapter was trained on: the given base_model folder (checked), or resolved from the record."""
    if base_dir is None:
        return ref_from_info(record.base_model)
    ref = load_ref(base_dir)
    if record.base_model != ref.info:
        raise ModelError(f"{adapter_dir}: trained on base {record.base_model.get('name')}, but {base_dir} holds "
                         f"{ref.info.get('name')}; run dvc repro to retrain, or leave out the base to use the "
                         "adapter's own")
    return ref


def load_scorer(adapter_dir: str | Path, base_dir: str | Path | None = None) -> LabelScorer:
    """Base model quantized exactly as in training, with the trained adapter on top."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    record = read_record(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelError(f"{adapter_dir}: no adapter_config.json; not a LoRA adapter folder")
    ref = adapter_base(adapter_dir, record, base_dir)
    tokenizer = load_tokenizer(ref)
    with head_from_adapter(record.head), peft_quietly():  # the adapter supplies the trained head
        model = load_model(ref, record.head, record.labels, record.quantization, tokenizer.pad_token_id)
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    return LabelScorer(model, tokenizer, record.head, record.labels, record.prompt_template, record.max_length,
                       record.chat_template)


def baseline_head(ref: BaseRef, head: str) -> str:
    """The head the baseline scores with. A classifier head is untrained before training (a coin toss), so on a
    causal LM the baseline is the base's own zero-shot answer: the label words' next-token scores after the prompt.
    An encoder (BERT) has no such answer: its baseline is the seeded, untrained head."""
    from transformers import AutoConfig

    if head != "classifier":
        return head
    architectures = AutoConfig.from_pretrained(ref.path, **ref.kwargs).architectures or []
    return "generative" if any(a.endswith("ForCausalLM") for a in architectures) else head


def load_baseline_scorer(base_dir: str | Path, params: Params) -> LabelScorer:
    """The untuned base, quantized as training will be, prompted as the generative head is (see baseline_head)."""
    ref = load_ref(base_dir)
    head = baseline_head(ref, params.model.head)
    tokenizer = load_tokenizer(ref)
    model = load_model(ref, head, list(params.data.labels), params.quantization, tokenizer.pad_token_id)
    return LabelScorer(model, tokenizer, head, list(params.data.labels), params.prompt_template,
                       params.train.max_length, params.prompt.chat_template)
