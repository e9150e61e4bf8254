"""Load the base model (4-bit through bitsandbytes when asked) with the generative or classifier head."""

from __future__ import annotations

import contextlib
import logging
import os
import re

from qlora_sentiment.model.base import BaseRef
from qlora_sentiment.config import QuantizationConfig
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.problems.model import bad_input

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
        raise ModelError(bad_input("bitsandbytes-missing").format(error=f"{type(exc).__name__}: {exc}")) from None
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


def keep_uninitialized_memory() -> None:
    """Stop torch filling every new tensor with NaN: what set_seed(deterministic=True) turns on with
    torch.use_deterministic_algorithms, a debugging aid against reads of uninitialized memory, not part of
    determinism (kernels overwrite what they allocate; the trained weights are byte-identical either way).
    bitsandbytes allocates each de-quantized 4-bit weight with torch.empty: torch.profiler books the NaN fill as
    21 % of a CPU training step (Gemma-3-270m, float32, AVX2), but most of that is the first touch of fresh pages,
    which the de-quantization kernel then pays instead: 1.02-1.03x reviews/s measured (BENCHMARKS.md).
    QLORA_FILL_UNINITIALIZED=1 keeps the fill (to hunt such a read, or to compare: bench/bench.py --speed)."""
    import torch

    if os.environ.get("QLORA_FILL_UNINITIALIZED") != "1":
        torch.utils.deterministic.fill_uninitialized_memory = False


def load_model(ref: BaseRef, head: str, labels: list[str], q: QuantizationConfig, pad_token_id: int,
               sharded: bool = False, on_cpu: bool = False):
    """The base model quantized as params ask, with the head params ask: on the GPU when CUDA is usable (one
    per process under a data-parallel launch; runtime.device: cpu hides the GPUs, see core.runtime), placed by
    FSDP itself when `sharded`; on the CPU whatever the GPUs when `on_cpu`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    keep_uninitialized_memory()
    quant = bnb_config(q, keep_full=HEAD_MODULES if head == "classifier" else None, sharded=sharded)
    kwargs = dict(ref.kwargs, dtype=torch_dtype(q.compute_dtype))
    if quant is not None:
        kwargs["quantization_config"] = quant
    if on_cpu:  # beside a GPU too small for what follows (the export's merge)
        kwargs["device_map"] = {"": "cpu"}
    elif torch.cuda.is_available() and not sharded:
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
    if quant is not None:
        keep_cpu_bf16_kernel(model, q.compute_dtype)
    return model


def keep_cpu_bf16_kernel(model, compute_dtype: str) -> None:
    """bitsandbytes (0.50) swaps a Linear4bit's matmul for a fused bf16 kernel in eval mode wherever the CPU has
    avx512_bf16, whatever the compute dtype: float32 asked, bf16 computed, and other scores than on an AVX2 CPU
    (it reads the CPU itself, past runtime.cpu_isa). Only a bf16 run with runtime.cpu_isa: native keeps it."""
    from qlora_sentiment.core.cpu_isa import pinned_isa

    keep = compute_dtype == "bfloat16" and pinned_isa() is None
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = module.support_avx512bf16_for_cpu and keep


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _HeadOnlyReport(logging.Filter):
    """Drops transformers' LOAD REPORT when all it reports is the classification head MISSING (newly initialized).

    True at that moment, but an adapter loaded next replaces the head with the trained one (PEFT modules_to_save),
    so printed on every predict/serve/evaluate/export it tells a user the opposite of what happened. A report
    with anything else in it (another missing key, UNEXPECTED, MISMATCH, CONVERSION) passes through unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", record.getMessage())
        if "LOAD REPORT" not in message:
            return True
        rows = [[cell.strip() for cell in line.split("|")] for line in message.splitlines() if "|" in line]
        rows = [row for row in rows if len(row) >= 2 and row[0] != "Key"]
        return not rows or not all(status == "MISSING" and key.split(".")[0] in HEAD_MODULES
                                   for key, status, *_ in rows)


@contextlib.contextmanager
def head_from_adapter(head: str):
    """Load a base whose head the adapter then supplies: no report of that head as missing (see _HeadOnlyReport)."""
    if head != "classifier":
        yield
        return
    report = logging.getLogger("transformers.modeling_utils")  # where from_pretrained logs its LOAD REPORT
    quiet = _HeadOnlyReport()
    report.addFilter(quiet)
    try:
        yield
    finally:
        report.removeFilter(quiet)


@contextlib.contextmanager
def peft_quietly():
    """PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` property whenever it wraps a model (and
    calls `gradient_checkpointing_enable` in prepare_model_for_kbit_training); transformers >= 5.24 warns about both,
    FutureWarnings about PEFT's own code, not ours (ours uses the new names): those two warnings only."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`(is_gradient_checkpointing|gradient_checkpointing_enable)` is "
                                "deprecated", category=FutureWarning)
        yield
