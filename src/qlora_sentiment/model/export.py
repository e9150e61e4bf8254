"""Merge a LoRA adapter into its de-quantized base: a standard Hugging Face folder anyone can load with
`AutoModelForCausalLM` / `AutoModelForSequenceClassification`, with a model card and the metrics it shipped with."""

from __future__ import annotations

import json
from pathlib import Path

from qlora_sentiment.model.base import BaseRef
from qlora_sentiment.core.io import write_json, write_text
from qlora_sentiment.model.loading import load_model, load_tokenizer, torch_dtype
from qlora_sentiment.model.tokenizer import save_tokenizer
from qlora_sentiment.model.scoring import LabelScorer
from qlora_sentiment.model.record import ModelRecord, write_record

def merge_adapter(adapter_dir: Path, ref: BaseRef, record: ModelRecord):
    """The base loaded exactly as in training (4-bit when it was), de-quantized to the compute dtype, then the
    LoRA deltas added into the plain weights. Merging into the de-quantized weights (not the original full-precision
    ones) keeps the function the adapter was trained against."""
    from peft import PeftModel

    q = record.quantization
    tokenizer = load_tokenizer(ref)
    model = load_model(ref, record.head, record.labels, q, tokenizer.pad_token_id)
    if q.load_in_4bit:
        model = model.dequantize(dtype=torch_dtype(q.compute_dtype))
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    if any(type(m).__name__ in ("Linear4bit", "Params4bit") for m in merged.modules()):
        raise RuntimeError("4-bit layers survived de-quantization; the export would not load without bitsandbytes")
    return merged, tokenizer


def write_export(merged, tokenizer, record: ModelRecord, out: Path, metrics: dict | None,
                 adapter_dir: Path) -> ModelRecord:
    merged.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    exported = record.exported(adapter_dir)
    write_record(out, exported)
    if metrics is not None:
        write_json(out / "metrics.json", metrics)
    write_text(out / "README.md", model_card(exported, metrics))
    return exported


def load_export(folder: Path, record: ModelRecord) -> LabelScorer:
    """A merged export, in its saved precision, no bitsandbytes needed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    cls = AutoModelForCausalLM if record.head == "generative" else AutoModelForSequenceClassification
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = cls.from_pretrained(folder, dtype=torch_dtype(record.export.dtype))
    if torch.cuda.is_available():
        model = model.to("cuda")
    return LabelScorer(model, tokenizer, record.head, record.labels, record.prompt_template, record.max_length)


def model_card(record: ModelRecord, metrics: dict | None) -> str:
    base = record.base_model
    base_name = base.get("upstream") or base.get("repo_id") or base.get("name")
    auto = record.export.auto_class
    lines = [
        "---",
        f"base_model: {base_name}",
        "library_name: transformers",
        "tags: [sentiment-analysis, qlora, lora, dvc]",
        "---",
        "",
        f"# Sentiment classifier ({record.head} head) fine-tuned from {base_name}",
        "",
        "Made by qlora-sentiment: a LoRA adapter trained on the "
        f"{'NF4 4-bit' if record.quantization.load_in_4bit else 'full-precision'} base, merged into the "
        f"de-quantized weights ({record.export.dtype}). Labels: {', '.join(record.labels)}.",
        "",
        "## Base model",
        "",
        "```json",
        json.dumps(base, indent=2),
        "```",
        "",
        "## Training",
        "",
        f"- trainable LoRA parameters: {record.trainable_parameters} of {record.total_parameters}",
        f"- steps: {record.global_step}, final train loss {record.train_loss}, "
        f"validation loss {record.eval_loss}",
        f"- optimizer: {record.optimizer.used} (asked for {record.optimizer.requested}), trained on {record.device}",
        f"- max length: {record.max_length} tokens",
        "",
    ]
    if record.head == "generative":
        lines += ["Prompt (the label is scored as the next token(s), never generated freely):", "", "```",
                  record.prompt_template, "```", ""]
    if metrics:
        lines += ["## Test metrics", "", "| metric | value |", "|---|---|"]
        for key in ("n", "accuracy", "roc_auc", "log_loss"):
            if key in metrics:
                lines.append(f"| {key} | {metrics[key]:.4g} |")
        if "macro" in metrics:
            lines.append(f"| macro F1 | {metrics['macro']['f1']:.4g} |")
        if "baseline" in metrics:
            lines.append(f"| accuracy of the untuned base | {metrics['baseline']['metrics']['accuracy']:.4g} |")
        lines.append("")
    lines += [
        "## How to load",
        "",
        "```python",
        "from qlora_sentiment import SentimentAnalyzer",
        "analyzer = SentimentAnalyzer.from_pretrained('path/to/this/folder')",
        "analyzer.predict(['A joyless, overlong mess.'])",
        "```",
        "",
        "or with transformers alone:",
        "",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        f"model = {auto}.from_pretrained('path/to/this/folder')",
        "tokenizer = AutoTokenizer.from_pretrained('path/to/this/folder')",
        "```",
        "",
    ]
    return "\n".join(lines)
