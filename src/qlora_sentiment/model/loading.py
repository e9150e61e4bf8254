"""Load the base model (4-bit through bitsandbytes when asked) with the generative or classifier head."""

from __future__ import annotations

import logging
import os

from qlora_sentiment.model.base import BaseRef
from qlora_sentiment.config import QuantizationConfig
from qlora_sentiment.core.errors import ModelError

log = logging.getLogger(__name__)


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# Classification heads are created untrained and trained in full (PEFT modules_to_save): never quantize them.
HEAD_MODULES = ["classifier", "score"]


def bnb_config(q: QuantizationConfig, keep_full: list[str] | None = None):
    """BitsAndBytesConfig from params, or None for full precision. Fails loudly if 4-bit cannot run here."""
    if not q.load_in_4bit:
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except Exception as exc:  # ImportError, or a broken native library
        raise ModelError(
            f"quantization.load_in_4bit: true, but bitsandbytes cannot load here ({type(exc).__name__}: {exc}); "
            "pip install 'bitsandbytes>=0.46', or set quantization.load_in_4bit: false for full precision"
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=torch_dtype(q.compute_dtype),
        llm_int8_skip_modules=keep_full,  # None: transformers' own choice (lm_head stays full precision)
    )


def load_tokenizer(ref: BaseRef):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
    if tokenizer.pad_token is None:
        # Llama-family tokenizers ship without a pad token; EOS is masked out by attention_mask anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: BaseRef, head: str, labels: list[str], q: QuantizationConfig, pad_token_id: int):
    """The base model on the best device, quantized as params ask, with the head params ask."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    quant = bnb_config(q, keep_full=HEAD_MODULES if head == "classifier" else None)
    kwargs = dict(ref.kwargs, dtype=torch_dtype(q.compute_dtype))
    if quant is not None:
        kwargs["quantization_config"] = quant
    if torch.cuda.is_available():  # one GPU per process under a data-parallel launch
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))}
    try:
        if head == "generative":
            model = AutoModelForCausalLM.from_pretrained(ref.path, **kwargs)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                ref.path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)}, **kwargs,
            )
            model.config.pad_token_id = pad_token_id
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load base model {ref.path}: {str(exc).splitlines()[0]}") from None
    if quant is not None and not any(type(m).__name__ == "Linear4bit" for m in model.modules()):
        raise ModelError(f"quantization.load_in_4bit: true, but {ref.path} loaded without 4-bit layers")
    return model
