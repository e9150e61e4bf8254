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
from qlora_sentiment.model.merge_memory import merge_on_cpu
from qlora_sentiment.model.loading import head_from_adapter, load_model, load_tokenizer, peft_quietly, torch_dtype
from qlora_sentiment.model.tokenizer import add_cleaning, read_whole_file, remove_cleaning, save_tokenizer
from qlora_sentiment.model.scoring import LabelScorer
from qlora_sentiment.model.classifier import CHECK_TEXTS, soft_capped, to_classifier
from qlora_sentiment.model.onnx import ONNX_FILE, OnnxClassifier, wants_onnx, write_onnx
from qlora_sentiment.model.record import RECORD_FILE, ModelRecord, write_record
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.problems.model import bad_input

log = logging.getLogger(__name__)


def merge_adapter(adapter_dir: Path, ref: BaseRef, record: ModelRecord):
    """The base loaded exactly as in training (4-bit when it was), de-quantized to the compute dtype, then the
    LoRA deltas added into the plain weights. Merging into the de-quantized weights (not the original full-precision
    ones) keeps the function the adapter was trained against."""
    from peft import PeftModel

    q = record.quantization
    tokenizer = load_tokenizer(ref)
    on_cpu = merge_on_cpu(ref, record)  # before any weight loads: a CPU merge without the RAM is refused, not killed
    with head_from_adapter(record.head), peft_quietly():  # the adapter supplies the trained head
        model = load_model(ref, record.head, record.labels, q, tokenizer.pad_token_id, on_cpu=on_cpu)
        if q.load_in_4bit:
            model = model.dequantize(dtype=torch_dtype(q.compute_dtype))
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    if any(type(m).__name__ in ("Linear4bit", "Params4bit") for m in merged.modules()):
        raise RuntimeError("4-bit layers survived de-quantization; the export would not load without bitsandbytes")
    return merged, tokenizer


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
    save_export_tokenizer(tokenizer, out, auto_class)
    exported = record.exported(adapter_dir, auto_class)
    if wants_onnx(auto_class, exported.export.dtype):  # the CPU inference path of predict and serve
        write_onnx(out, _max_length(tokenizer, record))
    write_record(out, exported)
    if metrics is not None:
        write_json(out / "metrics.json", metrics)
    model_card(exported, metrics, dataset, errors).save(out / "README.md")
    return exported


def save_export_tokenizer(tokenizer, out: Path, auto_class: str) -> None:
    """The tokenizer beside the saved model (its config.json is read here), so that plain
    `AutoTokenizer.from_pretrained(out)`, and so `pipeline()`, gives the ids of `tokenizer`: training's. A classifier
    export's tokenizer.json holds the cleaning (normalizer) and the prompt (post-processor) and is recorded as a
    PreTrainedTokenizerFast, read whole; the causal LM's tokenizer tokenizes whole prompts: it stays the base's
    (cleaning it would rewrite the prompt). Where transformers would still load another tokenizer the export stops
    (ModelError): never a folder that pipeline() quietly scores with other ids."""
    import transformers

    generic = auto_class == "AutoModelForSequenceClassification"
    save_tokenizer(tokenizer, out, generic=generic)
    loaded = transformers.AutoTokenizer.from_pretrained(out)
    if generic and not same_tokenizer(loaded, tokenizer):
        forced = type(loaded).__name__  # a model type whose class transformers forces (Qwen2, Phi-3, ...)
        read_whole_file(out)
        loaded = transformers.AutoTokenizer.from_pretrained(out)
        log.info("export: transformers forces %s on this model type, which rebuilds the normalizer (the cleaning, "
                 "the leading space); tokenizer_config.json's auto_map makes AutoTokenizer read tokenizer.json "
                 "whole (with trust_remote_code=True it stops instead)", forced)
    if not same_tokenizer(loaded, tokenizer):
        raise ModelError(f"export: transformers {transformers.__version__} loads this export's tokenizer as "
                         f"{type(loaded).__name__}, which gives other token ids than training's, and "
                         "AutoTokenizer/pipeline() would score them without a word: the export stops here (report it "
                         "with the transformers version: tokenizer_config.json needs another way to name its class)")


def same_tokenizer(loaded, saved, texts=(*CHECK_TEXTS, "Review: <b>10/10</b>!\n\n")) -> bool:
    """The same tokenizers pipeline around the same vocabulary (normalizer, pre-tokenizer, post-processor, decoder,
    added tokens) and the same ids for CHECK_TEXTS, whatever Python class holds it. The vocabulary is compared by
    kind and size only: the model classes rebuild theirs from the file's (a 262k one's JSON takes seconds)."""
    a, b = loaded.backend_tokenizer, saved.backend_tokenizer

    def state(part):
        return None if part is None else part.__getstate__()

    return (all(state(getattr(a, p)) == state(getattr(b, p))
                for p in ("normalizer", "pre_tokenizer", "post_processor", "decoder"))
            and type(a.model) is type(b.model) and a.get_vocab_size() == b.get_vocab_size()
            and a.get_added_tokens_decoder() == b.get_added_tokens_decoder()
            and all(loaded(t)["input_ids"] == saved(t)["input_ids"] for t in texts))


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
        raise ModelError(bad_input("export-without-onnx").format(folder=folder, onnx=ONNX_FILE, why=why))
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
        # exports written before the auto_map (save_export_tokenizer): transformers 5 swaps the saved generic class
        # for its own for some model types (Qwen2, Phi-3), which rebuilds its normalizer; the generic one reads the file
        tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(folder)
        if not remove_cleaning(tokenizer, record.clean):
            raise ModelError(bad_input("export-tokenizer-not-cleaning").format(folder=folder, record=RECORD_FILE))
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
