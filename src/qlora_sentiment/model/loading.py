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


def bnb_config(q: QuantizationConfig, keep_full: list[str] | None = None, sharded: bool = False):
    """BitsAndBytesConfig from params, or None for full precision. Fails loudly if 4-bit cannot run here.

    sharded (runtime.strategy: fsdp): FSDP shards only floating-point tensors of one dtype, so the packed 4-bit
    weights are stored in the compute dtype instead of uint8 (bitsandbytes' quant_storage, FSDP-QLoRA)."""
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
        **({"bnb_4bit_quant_storage": torch_dtype(q.compute_dtype)} if sharded else {}),
    )


# Tokens some vocabularies reserve for padding without naming them the pad token (Llama 3.1: the first).
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<pad>", "<|pad|>", "[PAD]")


def load_tokenizer(ref: BaseRef):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
    if tokenizer.pad_token is None:
        # Llama and Mistral tokenizers ship without a pad token. A reserved padding token when the vocabulary has
        # one, else EOS: padded positions are masked out by the attention mask either way.
        vocab = tokenizer.get_vocab()
        tokenizer.pad_token = next((t for t in PAD_CANDIDATES if t in vocab), tokenizer.eos_token)
    return tokenizer


def load_model(ref: BaseRef, head: str, labels: list[str], q: QuantizationConfig, pad_token_id: int,
               sharded: bool = False):
    """The base model quantized as params ask, with the head params ask: on the GPU when CUDA is usable (one
    per process under a data-parallel launch; runtime.device: cpu hides the GPUs, see core.runtime), placed by
    FSDP itself when `sharded`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    quant = bnb_config(q, keep_full=HEAD_MODULES if head == "classifier" else None, sharded=sharded)
    kwargs = dict(ref.kwargs, dtype=torch_dtype(q.compute_dtype))
    if quant is not None:
        kwargs["quantization_config"] = quant
    if torch.cuda.is_available() and not sharded:
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
