"""The export's model card, built with huggingface_hub's ModelCard / ModelCardData: metadata the Hub reads
(base model, datasets, licence, pipeline tag, model-index results) and the text a person reads (recipe, how to
load it, limitations from the error analysis)."""

from __future__ import annotations

from qlora_sentiment.model.record import ModelRecord

LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0", "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
            "google/gemma-3-270m": "gemma"}  # the Hub's licence id for the Gemma terms of use
CUES = {"negation": "negations", "contrast": "contrast words (but, however)", "intensifier": "intensifiers",
        "question": "questions", "exclamation": "exclamations"}


def base_name(record: ModelRecord) -> str:
    base = record.base_model
    return base.get("upstream") or base.get("repo_id") or base.get("name")


def _results(record: ModelRecord, metrics: dict | None, dataset: dict | None) -> list:
    from huggingface_hub import EvalResult

    if not metrics or not dataset:
        return []
    common = dict(task_type="text-classification", task_name="Sentiment analysis", dataset_type=dataset["id"],
                  dataset_name=dataset["name"], dataset_split="test", dataset_config=dataset.get("config"))
    return [EvalResult(metric_type="accuracy", metric_value=round(metrics["accuracy"], 4), **common),
            EvalResult(metric_type="f1", metric_name="macro F1", metric_value=round(metrics["macro"]["f1"], 4),
                       metric_args={"average": "macro"}, **common)]


def _limitations(errors: dict | None) -> list[str]:
    lines = ["- Trained and tested on one kind of text (see the dataset above); expect lower accuracy elsewhere."]
    if not errors:
        return lines
    overall = errors["overall"]["error_rate"]
    lines.append(f"- Error rate on the test split: {overall:.1%} ({errors['overall']['errors']} of "
                 f"{errors['overall']['n']}).")
    for cue, split in errors.get("cues", {}).items():
        rate = split["with"]["error_rate"]
        if split["with"]["n"] >= 20 and rate > overall * 1.1:
            lines.append(f"- Reviews with {CUES.get(cue, cue)}: {rate:.1%} errors (n={split['with']['n']}).")
    return lines


def model_card(record: ModelRecord, metrics: dict | None, dataset: dict | None = None, errors: dict | None = None):
    from huggingface_hub import ModelCard, ModelCardData

    base = base_name(record)
    data = ModelCardData(
        base_model=base, library_name="transformers", pipeline_tag="text-classification",
        license=LICENSES.get(base), datasets=[dataset["id"]] if dataset else None,
        tags=["sentiment-analysis", "qlora", "lora", "dvc", "qlora-sentiment"],
        model_name=f"{base.split('/')[-1]}-sentiment", eval_results=_results(record, metrics, dataset) or None,
    )
    quantized = "NF4 4-bit" if record.quantization.load_in_4bit else "full-precision"
    causal = record.export.auto_class == "AutoModelForCausalLM"
    head = ("The generative head's label scoring is stored as a classification head: the score layer holds the "
            "label tokens' rows of the LM head, and the tokenizer wraps raw text in the training prompt."
            if record.head == "generative" else "A sequence-classification head trained with LoRA.")
    if causal:
        head = ("This model soft-caps its final logits, which a classification head cannot reproduce, so this is the "
                "merged causal LM: score it with the project's API (the label is read as the next token after the "
                "prompt below); `pipeline(\"text-classification\")` does not apply.")
    pair = record.task != "sentence"  # a (text, aspect) pair classifier
    example = ('{"text": "The food was great but the service was slow.", "text_pair": "service"}' if pair
               else '"A joyless, overlong mess."')
    api = ('predict("The food was great but the service was slow.", aspects=["food", "service"])' if pair
           else "predict([...])")
    body = [
        f"# {data.model_name}", "",
        f"A sentiment classifier ({', '.join(record.labels)}) fine-tuned from {base} with LoRA on the {quantized} "
        f"base by qlora-sentiment (a DVC pipeline), merged into the de-quantized weights "
        f"({record.export.dtype}). {head}", "",
        *([f"It labels the sentiment a text expresses toward one aspect ({record.task}): give it the text and the "
           "aspect as a text pair.", ""] if pair else []),
        "## How to use", "",
        *([] if causal else ["```python", "from transformers import pipeline", "",
                             "classify = pipeline(\"text-classification\", model=\"path/or/hub-id\", top_k=None)",
                             f"classify({example})", "```", "", "or with the project's API (same scores):"]),
        f"`SentimentAnalyzer.from_pretrained(\"path\").{api}` (qlora-sentiment).", "",
        "## Training", "",
        f"- LoRA: {record.trainable_parameters:,} trainable of {record.total_parameters:,} parameters; "
        f"{record.global_step} steps on {record.processes} process(es), on {record.device}",
        f"- optimizer: {record.optimizer.used} (asked for {record.optimizer.requested}); mean training loss "
        f"{record.train_loss}, validation loss {record.eval_loss}",
        f"- validation: accuracy {record.validation.get('accuracy', float('nan')):.4f}, macro F1 "
        f"{record.validation.get('macro_f1', float('nan')):.4f}",
        f"- max length {record.max_length} tokens; quantization {record.quantization.model_dump()}", "",
    ]
    if record.head == "generative":
        body += ["Prompt (the tokenizer adds it; the label is read as the next token, never generated):", "",
                 "```", record.prompt_template, "```", ""]
    if metrics:
        body += ["## Test results", "", "| metric | value |", "|---|---|",
                 f"| n | {metrics['n']} |", f"| accuracy | {metrics['accuracy']:.4f} |",
                 f"| macro F1 | {metrics['macro']['f1']:.4f} |"]
        if "baseline" in metrics:
            body.append(f"| accuracy of the untuned base | {metrics['baseline']['metrics']['accuracy']:.4f} |")
        body.append("")
    body += ["## Limitations", "", *_limitations(errors), ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
