"""The generative head as a standard sequence classifier, so `pipeline("text-classification")` works on the export.

Label scoring reads the next-token logits of the label tokens after the prompt and takes a softmax over them.
That is exactly a `*ForSequenceClassification` model whose score layer holds the label tokens' rows of the LM
head: it reads the last (non-pad) position's hidden state and multiplies it by those rows. The prompt moves into
the tokenizer: its post-processor puts the prompt's tokens around the review's, so raw text goes in and nothing
outside the folder needs to know the prompt. The tokenizer's normalizer first cleans the text as prepare cleaned
the training texts (model/tokenizer.py); it runs on the review alone, never on the prompt's tokens.
"""

from __future__ import annotations

import copy

from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.model.prompts import PromptFormatter
from qlora_sentiment.model.record import ModelRecord
from qlora_sentiment.model.tokenizer import add_cleaning

CHECK_ASPECT = "the service"
CHECK_TEXTS = ("A warm, funny film.", "A joyless, overlong mess.", "not bad at all -- 3/5", "Ça m'a plu !",
               "two\nlines", "\"quoted\" (and bracketed)", "\ufeffA <b>dull</b>\u200b film &amp; a\u00a0bore")


def label_rows(formatter: PromptFormatter, labels: list[str]) -> list[int]:
    answers = formatter.answers
    if any(len(a) != 1 for a in answers) or len({a[0] for a in answers}) != len(labels):
        spelled = {label: len(a) for label, a in zip(labels, answers)}
        raise ModelError(f"export: a classification head reads one token per label, but the labels take {spelled} "
                         "tokens after the prompt; use single-token label names (data.labels), or the causal-LM "
                         "export (qlora_sentiment.model.export.merge_adapter) and the project's scorer")
    return [a[0] for a in answers]


def wrap_tokenizer(tokenizer, formatter: PromptFormatter):
    """A copy of `tokenizer` that turns raw text into the prompt's token ids: the review through the tokenizer's
    own pipeline (a leading space first where the template puts one), the prompt's fixed ids around it."""
    from tokenizers import normalizers, processors

    prefix_ids, suffix_ids = formatter.prefix_ids, formatter.suffix_ids  # BOS included in the prefix if added
    wrapped = copy.deepcopy(tokenizer)
    backend = wrapped.backend_tokenizer
    if formatter.space:
        # before the tokenizer's own normalizer, which may spell spaces its way (Gemma: " " -> "▁")
        steps = [backend.normalizer] if backend.normalizer is not None else []
        backend.normalizer = normalizers.Sequence([normalizers.Prepend(" "), *steps])

    def special(name, ids):
        return {"id": name, "ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids)}

    parts = [("[PROMPT]", prefix_ids), ("[ANSWER]", suffix_ids), ("[ASPECT]", formatter.middle_ids)]
    head = [*(["[PROMPT]"] if prefix_ids else []), "$A"]
    tail = ["[ANSWER]"] if suffix_ids else []
    template = " ".join(head + tail)
    # the aspect tasks: (review, aspect) as a text pair, the prompt's middle between them; the normalizer's leading
    # space (above) then goes before both, so both slots must be spelled alike ("Review: {text}", "Aspect: {aspect}")
    pair = " ".join(head + (["[ASPECT]"] if formatter.middle_ids else []) + ["$B"] + tail) if formatter.has_aspect \
        else f"{template} $B"
    if formatter.has_aspect and formatter.space != formatter.aspect_space:
        raise ModelError("export: the aspect template puts a space before only one of {text} and {aspect}; the "
                         "tokenizer cannot spell both; write both as 'Label: {field}'")
    backend.post_processor = processors.TemplateProcessing(
        single=template, pair=pair, special_tokens=[special(n, ids) for n, ids in parts if ids])
    # truncation=True cuts the review where the scorer cuts it (the prompt's ids are counted in, never cut)
    wrapped.model_max_length = len(prefix_ids) + formatter.text_budget + len(formatter.middle_ids) + len(suffix_ids)
    return wrapped


def check_wrapping(wrapped, formatter: PromptFormatter, record: ModelRecord, texts=CHECK_TEXTS) -> None:
    """The wrapped tokenizer must give the scorer's exact ids for the cleaned text (what SentimentAnalyzer
    scores), or the export would score another prompt. The last text is longer than any budget: cut alike."""
    longest = " ".join(["a long review, word after word"] * (formatter.max_length // 2))
    for text in (*texts, longest):
        if formatter.has_aspect:  # the pair the aspect tasks score, the review cut first (as pipeline()'s caller asks)
            clean, clean_aspect = record.clean_texts([text, CHECK_ASPECT])
            expected = formatter.encode([clean], [clean_aspect])[0]
            got = wrapped(text, CHECK_ASPECT, truncation="only_first")["input_ids"]
        else:
            expected = formatter.encode(record.clean_texts([text]))[0]
            got = wrapped(text, truncation=True)["input_ids"]
        if got != expected:
            raise ModelError(f"export: the tokenizer cannot reproduce the prompt's tokens for {text[:60]!r} "
                             f"({len(got)} vs {len(expected)} tokens); keep the causal-LM export for this model")


def soft_capped(config) -> bool:
    """Gemma 2 squashes its final logits (c * tanh(logit / c)); a score layer cannot, so no exact classifier."""
    return bool(getattr(config, "final_logit_softcapping", None))


def to_classifier(merged, tokenizer, record: ModelRecord):
    """(sequence-classification model, wrapping tokenizer) computing what LabelScorer computes on `merged`."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForSequenceClassification

    config = merged.config
    if soft_capped(config):
        raise ModelError("export: this model soft-caps its final logits (Gemma 2), which a sequence-classification "
                         "head does not; keep the causal-LM export for it")
    formatter = PromptFormatter(tokenizer, record.prompt_template, record.labels, record.max_length,
                                record.chat_template)
    rows = label_rows(formatter, record.labels)
    wrapped = wrap_tokenizer(tokenizer, formatter)
    if record.clean is not None:
        add_cleaning(wrapped, record.clean)  # first: the wrapper's Prepend(" ") comes after its Strip
    check_wrapping(wrapped, formatter, record)
    if wrapped(CHECK_TEXTS[0])["input_ids"][-1] == tokenizer.pad_token_id:
        raise ModelError("export: the prompt ends with the pad token, which the classifier would skip as padding")
    head = merged.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ModelError("export: the LM head has a bias, which a score layer has not; keep the causal-LM export")
    cls_config = copy.deepcopy(config)
    cls_config.num_labels = len(record.labels)
    cls_config.id2label = dict(enumerate(record.labels))
    cls_config.label2id = {label: i for i, label in enumerate(record.labels)}
    cls_config.pad_token_id = tokenizer.pad_token_id
    cls_config.architectures = None
    # Parameters on the meta device (no memory, no random init: 15 GB and minutes for an 8B model on the CPU),
    # then the merged model's own tensors assigned in; buffers (rotary frequencies) are built as usual.
    with init_empty_weights():
        model = AutoModelForSequenceClassification.from_config(cls_config, dtype=merged.dtype)
    if not hasattr(model, "score"):
        raise ModelError(f"export: {type(model).__name__} has no score layer to hold the label rows")
    model.base_model.load_state_dict(merged.base_model.state_dict(), assign=True)
    model.score.weight = torch.nn.Parameter(head.weight.data[rows].clone(), requires_grad=False)
    left = [name for name, p in model.named_parameters() if p.is_meta]
    if left:
        raise ModelError(f"export: the classifier's {left[:3]} have no counterpart in the merged model")
    return model.eval(), wrapped
