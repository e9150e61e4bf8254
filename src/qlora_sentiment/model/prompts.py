"""The instruction prompt of the generative head as a token-level template, shared by training, scoring and the
export so all three see the same token ids.

The prompt's fixed parts are tokenized once, the review is tokenized on its own, and the ids are joined:
prefix ids + review ids + suffix ids (+ answer ids + EOS in training). Tokenizing the rendered string as a whole
would let tokens merge across the review's edges (Llama 3 and Qwen join a final "." with the "\\n\\n" after it;
a Metaspace tokenizer such as Mistral's in transformers 5 spells a text's start with "▁"), and no tokenizer
post-processor could then put the prompt around a raw review the way training saw it. With ids joined, the
export's tokenizer (model/classifier.py: the review through the tokenizer's own pipeline, the prompt's ids added
by its post-processor) gives exactly the ids training and scoring used.
"""

from __future__ import annotations

import string

from qlora_sentiment.core.errors import ConfigError

SENTINEL = "\u2063qlora-sentiment-text\u2063"  # stands for the review while the rendered prompt is split around it
ASPECT_SENTINEL = "\u2063qlora-sentiment-aspect\u2063"  # and for the aspect (after the review: PromptConfig checks)


def label_phrase(labels: list[str]) -> str:
    return " or ".join(labels) if len(labels) == 2 else ", ".join(labels[:-1]) + " or " + labels[-1]


def completion(label: str) -> str:
    """What the model learns to write after the prompt; scoring reads the same tokens."""
    return " " + label


class PromptFormatter:
    """Token ids of prompts, the review cut (never the instruction, aspect or answer) to fit max_length tokens.
    With {aspect} in the template (the aspect tasks) the ids are prefix + review + middle + aspect + suffix."""

    def __init__(self, tokenizer, template: str, labels: list[str], max_length: int, chat: bool = False):
        self.tokenizer, self.template, self.labels = tokenizer, template, labels
        self.max_length, self.chat = max_length, chat
        if chat and not getattr(tokenizer, "chat_template", None):
            raise ConfigError("params: prompt.chat_template: true, but this model's tokenizer has no chat template; "
                              "set prompt.chat_template: false")
        # a placeholder, not the text "{aspect}" (a literal "{{aspect}}" is no placeholder)
        self.has_aspect = "aspect" in {field for _, field, _, _ in string.Formatter().parse(template)}
        self.adds_bos = self._tokenizer_adds_bos()  # render_raw needs it: tokenize once, not per render
        rendered = self.render_raw(SENTINEL, ASPECT_SENTINEL if self.has_aspect else None)
        prefix, suffix = rendered.split(SENTINEL)
        middle, suffix = suffix.split(ASPECT_SENTINEL) if self.has_aspect else ("", suffix)
        # "Review: {text}": the space belongs to the review's first token (byte-level BPE's "Ġword", "▁word");
        # "Aspect: {aspect}" alike for the aspect
        self.space, self.aspect_space = prefix.endswith(" "), middle.endswith(" ")
        bos = [tokenizer.bos_token_id] if self.adds_bos else []
        self.prefix_ids = bos + self._ids(prefix.removesuffix(" ") if self.space else prefix)
        self.middle_ids = self._following_ids(middle.removesuffix(" ") if self.aspect_space else middle)
        self.suffix_ids = self._following_ids(suffix)
        self.answers = [self._following_ids(completion(label)) for label in labels]
        fixed = len(self.prefix_ids) + len(self.middle_ids) + len(self.suffix_ids)
        # + 1: the EOS that ends every training answer
        self.text_budget = max_length - fixed - max(len(a) for a in self.answers) - 1
        if self.text_budget < 8:
            raise ConfigError(f"params: train.max_length: {max_length} tokens leave no room for the review after the "
                              f"prompt template ({fixed} tokens); raise it or shorten prompt."
                              f"{'aspect_template' if self.has_aspect else 'template'}")

    def render_raw(self, text: str, aspect: str | None = None) -> str:
        """The prompt as a string (the chat template applied): what the token ids spell, for people to read."""
        body = self.template.format(text=text, labels=label_phrase(self.labels), aspect=aspect)
        if not self.chat:
            return body
        # The model's own chat template, ending with the assistant header: the answer follows it.
        rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                                      add_generation_prompt=True)
        # Templates that write BOS themselves: the prefix's ids take the one the tokenizer adds, not a second.
        bos = self.tokenizer.bos_token
        if bos and rendered.startswith(bos) and self.adds_bos:
            rendered = rendered[len(bos):]
        return rendered

    def _tokenizer_adds_bos(self) -> bool:
        ids = self.tokenizer("a")["input_ids"]
        return bool(ids) and ids[0] == self.tokenizer.bos_token_id

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _following_ids(self, text: str) -> list[int]:
        """`text`'s ids as they read after other text: a Metaspace tokenizer marks a text's start ("▁"), which the
        middle of a prompt has not, so tokenize it behind an anchor and drop the anchor's ids where they stay apart."""
        anchor, joined = self._ids("a"), self._ids("a" + text)
        if text and joined[:len(anchor)] == anchor and len(joined) > len(anchor):
            return joined[len(anchor):]
        return self._ids(text)

    def label_token_ids(self, label: str) -> list[int]:
        """Tokens of ' label' after the prompt: what training teaches and scoring reads."""
        return self.answers[self.labels.index(label)]

    def text_ids(self, texts: list[str], budgets: list[int] | None = None) -> list[list[int]]:
        """Each review's own tokens (the space of "Review: {text}" first), cut at the budget: the export's
        tokenizer makes these from raw text (its normalizer prepends the space; truncation cuts at the same place)."""
        lead = " " if self.space else ""
        encoded = self.tokenizer([lead + t for t in texts], add_special_tokens=False)["input_ids"]
        return [ids[:budget] for ids, budget in zip(encoded, budgets or [self.text_budget] * len(encoded))]

    def aspect_ids(self, aspects: list[str]) -> list[list[int]]:
        """Each aspect's tokens, never cut: the review gives up its room instead (as truncation="only_first" does
        in the export's tokenizer, the aspect being the pair's second text)."""
        lead = " " if self.aspect_space else ""
        encoded = self.tokenizer([lead + a for a in aspects], add_special_tokens=False)["input_ids"]
        for aspect, ids in zip(aspects, encoded):
            if len(ids) > self.text_budget // 2:
                raise ConfigError(f"aspect {aspect[:40]!r}: {len(ids)} tokens, more than half of the review's budget "
                                  f"({self.text_budget} tokens of train.max_length); shorten it")
        return encoded

    def encode(self, texts: list[str], aspects: list[str] | None = None) -> list[list[int]]:
        """Prompt ids: prefix + review + suffix, or prefix + review + middle + aspect + suffix."""
        if (aspects is not None) != self.has_aspect:
            raise ConfigError("the prompt template names {aspect}: score (text, aspect) pairs" if self.has_aspect
                              else "aspects given, but the prompt template has no {aspect}")
        if aspects is None:
            return [self.prefix_ids + ids + self.suffix_ids for ids in self.text_ids(texts)]
        aspect_ids = self.aspect_ids(aspects)
        text_ids = self.text_ids(texts, [self.text_budget - len(a) for a in aspect_ids])
        return [self.prefix_ids + t + self.middle_ids + a + self.suffix_ids for t, a in zip(text_ids, aspect_ids)]

    def training_examples(self, texts: list[str], labels: list[str], aspects: list[str] | None = None) -> list[dict]:
        """input_ids and completion_mask as TRL's SFTTrainer takes them pre-tokenized (loss on answer + EOS); the
        prompts tokenized as one batch (the hot path of dataset preparation)."""
        examples = []
        for prompt, label in zip(self.encode(texts, aspects), labels):
            answer = self.label_token_ids(label) + [self.tokenizer.eos_token_id]
            examples.append({"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)})
        return examples
