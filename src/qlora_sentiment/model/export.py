"""Merge a LoRA adapter into its de-quantized base and export a standard Hugging Face sequence classifier (both
heads: the generative one through model/classifier.py), with a model card and the metrics it shipped with.
`merge_adapter` alone gives the causal LM, for those who want generation."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from qlora_sentiment.model.base import BaseRef
from qlora_sentiment.core.io import write_json
from qlora_sentiment.model.card import model_card
from qlora_sentiment.model.loading import head_from_adapter, load_model, load_tokenizer, peft_quietly, torch_dtype
from qlora_sentiment.model.tokenizer import add_cleaning, remove_cleaning, save_tokenizer
from qlora_sentiment.model.scoring import LabelScorer
from qlora_sentiment.model.classifier import soft_capped, to_classifier
from qlora_sentiment.model.onnx import ONNX_FILE, OnnxClassifier, wants_onnx, write_onnx
from qlora_sentiment.model.record import RECORD_FILE, ModelRecord, write_record
from qlora_sentiment.core.errors import ModelError

log = logging.getLogger(__name__)


def merge_adapter(adapter_dir: Path, ref: BaseRef, record: ModelRecord):
    """The base loaded exactly as in training (4-bit when it was), de-quantized to the compute dtype, then the
    LoRA deltas added into the plain weights. Merging into the de-quantized weights (not the original full-precision
    ones) keeps the function the adapter was trained against."""
    from peft import PeftModel

    q = record.quantization
    tokenizer = load_tokenizer(ref)
    on_cpu = not merge_fits_gpu(ref, record)
    with head_from_adapter(record.head), peft_quietly():  # the adapter supplies the trained head
        model = load_model(ref, record.head, record.labels, q, tokenizer.pad_token_id, on_cpu=on_cpu)
        if q.load_in_4bit:
            model = model.dequantize(dtype=torch_dtype(q.compute_dtype))
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    if any(type(m).__name__ in ("Linear4bit", "Params4bit") for m in merged.modules()):
        raise RuntimeError("4-bit layers survived de-quantization; the export would not load without bitsandbytes")
    return merged, tokenizer


def parameter_count(ref: BaseRef) -> int:
    """The base's parameters, counted on the meta device (no memory, no weights read)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(ref.path, **ref.kwargs))
    model.tie_weights()  # a tied LM head is the embedding, counted once (as the loaded model is)
    return model.num_parameters()


def merge_fits_gpu(ref: BaseRef, record: ModelRecord, headroom: float = 0.9) -> bool:
    """Whether the GPU has room for the merge: the de-quantized model in the compute dtype beside its 4-bit copy
    (~0.56 bytes a parameter). A 7-9B model in bf16 takes 13.5-17.2 GiB: more than a 16 GB card has free. No:
    the merge runs on the CPU (said, with the RAM it needs); same result, it is the same de-quantized arithmetic."""
    import torch

    if not torch.cuda.is_available():
        return False
    count = parameter_count(ref)
    need = count * (torch_dtype(record.quantization.compute_dtype).itemsize
                    + (0.56 if record.quantization.load_in_4bit else 0))
    free = torch.cuda.mem_get_info()[0]
    if need <= headroom * free:
        return True
    log.warning("export: merging %.1fB parameters takes ~%.1f GiB and the GPU has %.1f GiB free; merging on the CPU "
                "instead (~%.1f GiB of RAM, slower)", count / 1e9, need / 2**30, free / 2**30, need / 2**30)
    return False


def write_export(merged, tokenizer, record: ModelRecord, out: Path, metrics: dict | None,
                 adapter_dir: Path, dataset: dict | None = None, errors: dict | None = None) -> ModelRecord:
    """`out`: an AutoModelForSequenceClassification folder whose tokenizer cleans raw text as prepare did (its
    normalizer) and wraps it in the prompt (its post-processor)."""
    auto_class = "AutoModelForSequenceClassification"
    if record.head == "generative" and soft_capped(merged.config):
        auto_class = "AutoModelForCausalLM"
        log.warning("export: %s soft-caps its final logits, which a classification head cannot reproduce; the "
                    "export is the merged causal LM (recorded in %s and its model card)",
                    type(merged).__name__, "qlora_sentiment.json")
    elif record.head == "generative":
        merged, tokenizer = to_classifier(merged, tokenizer, record)
    elif record.clean is not None:
        tokenizer = copy.deepcopy(tokenizer)
        add_cleaning(tokenizer, record.clean)
    # shards of at most 5 GB: a merged 7B (14.5 GB in bf16) in one file is hard to upload, mirror or memory-map
    merged.save_pretrained(out, max_shard_size="5GB")
    # The causal LM's tokenizer tokenizes whole prompts: it stays the base's (cleaning it would rewrite the prompt)
    save_tokenizer(tokenizer, out, generic=auto_class == "AutoModelForSequenceClassification")
    if auto_class == "AutoModelForSequenceClassification" and record.clean is not None:
        warn_if_auto_tokenizer_drops_cleaning(out, tokenizer)
    exported = record.exported(adapter_dir, auto_class)
    if wants_onnx(auto_class, exported.export.dtype):  # the CPU inference path of predict and serve
        write_onnx(out, _max_length(tokenizer, record))
    write_record(out, exported)
    if metrics is not None:
        write_json(out / "metrics.json", metrics)
    model_card(exported, metrics, dataset, errors).save(out / "README.md")
    return exported


def warn_if_auto_tokenizer_drops_cleaning(out: Path, saved) -> None:
    """`AutoTokenizer` (and so `pipeline()`) must load the normalizer that was saved; for model types whose class
    transformers 5 forces (Qwen2, Phi-3, ...) it does not: say so once, with the way round it."""
    import transformers

    loaded = transformers.AutoTokenizer.from_pretrained(out)
    if loaded.backend_tokenizer.normalizer.__getstate__() != saved.backend_tokenizer.normalizer.__getstate__():
        log.warning("export: transformers' AutoTokenizer loads this model type as %s, which drops the text cleaning "
                    "from tokenizer.json; SentimentAnalyzer and the CLI clean anyway, and for pipeline() pass "
                    "tokenizer=PreTrainedTokenizerFast.from_pretrained(folder)", type(loaded).__name__)


def _max_length(tokenizer, record: ModelRecord) -> int:
    """Tokens a classifier export reads: a generative head's export wraps the review in the prompt, and its
    tokenizer's model_max_length is the prompt plus the review's budget."""
    return tokenizer.model_max_length if record.head == "generative" else record.max_length


def export_backend(folder: Path, record: ModelRecord, backend: str) -> str:
    """`auto`: ONNX Runtime when the export has its ONNX copy and no GPU is visible, else torch. `onnx` without
    the copy, or for an export that cannot have one, is an error (ModelError), never a quiet switch to torch."""
    import torch

    has_onnx = (Path(folder) / ONNX_FILE).is_file()
    if backend == "auto":
        return "onnx" if has_onnx and not torch.cuda.is_available() else "torch"
    if backend == "onnx" and not has_onnx:
        why = ("" if wants_onnx(record.export.auto_class, record.export.dtype)
               else f" ({record.export.dtype} {record.export.auto_class} exports get none)")
        raise ModelError(f"{folder}: --backend onnx, but the export has no {ONNX_FILE}{why}; rebuild it with "
                         "dvc repro export, or use --backend torch")
    return backend


def load_export(folder: Path, record: ModelRecord, backend: str = "auto", threads: int | None = None) -> LabelScorer:
    """A merged export, in its saved precision, no bitsandbytes or PEFT needed: a plain sequence classifier whose
    tokenizer already wraps the text in the prompt (what `pipeline("text-classification")` runs). `backend`:
    see export_backend; `threads`: ONNX Runtime's (torch's are the caller's)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if record.clean is not None and record.export.auto_class == "AutoModelForSequenceClassification" \
            and not remove_cleaning(tokenizer, record.clean):
        # transformers 5 swaps the saved generic class for its own for some model types (Qwen2, Phi-3: "incorrect
        # hub tokenizer class"), and that class rebuilds its normalizer in code; the generic one reads the file whole
        tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(folder)
        if not remove_cleaning(tokenizer, record.clean):
            raise ModelError(f"{folder}: tokenizer.json does not start with the text cleaning {RECORD_FILE} "
                             "records (edited, or from another version?); rebuild the export (dvc repro export)")
    # SentimentAnalyzer cleans in Python (exactly as prepare did, every entity): the normalizer's copy comes off
    if export_backend(folder, record, backend) == "onnx":
        model = OnnxClassifier(Path(folder) / ONNX_FILE, threads)
    else:
        auto = getattr(transformers, record.export.auto_class)
        model = auto.from_pretrained(folder, dtype=torch_dtype(record.export.dtype))
        if torch.cuda.is_available():
            model = model.to("cuda")
    if record.export.auto_class == "AutoModelForCausalLM":  # soft-capped logits: scored as in training
        return LabelScorer(model, tokenizer, record.head, record.labels, record.prompt_template, record.max_length,
                           record.chat_template)
    return LabelScorer(model, tokenizer, "classifier", record.labels, record.prompt_template,
                       _max_length(tokenizer, record))
