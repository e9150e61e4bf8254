"""The instruction prompt of the generative head, shared by training and scoring so both see the same tokens."""

from __future__ import annotations

from qlora_sentiment.core.errors import ConfigError


def label_phrase(labels: list[str]) -> str:
    return " or ".join(labels) if len(labels) == 2 else ", ".join(labels[:-1]) + " or " + labels[-1]


def completion(label: str) -> str:
    """What the model learns to write after the prompt; scoring reads the same tokens."""
    return " " + label


class PromptFormatter:
    """Renders prompts, truncating the review (never the instruction or answer) to fit max_length tokens."""

    def __init__(self, tokenizer, template: str, labels: list[str], max_length: int, chat: bool = False):
        self.tokenizer = tokenizer
        self.template = template
        self.labels = labels
        self.max_length = max_length
        self.chat = chat
        if chat and not getattr(tokenizer, "chat_template", None):
            raise ConfigError("params: prompt.chat_template: true, but this model's tokenizer has no chat template; "
                              "set prompt.chat_template: false")
        empty = self.render_raw("")
        longest_answer = max(len(self.label_token_ids(lab)) for lab in labels)
        # +1 for the EOS that TRL appends to the completion, +2 slack for re-tokenisation at the cut.
        self.text_budget = max_length - len(tokenizer(empty)["input_ids"]) - longest_answer - 3
        if self.text_budget < 8:
            raise ConfigError(
                f"params: train.max_length: {max_length} tokens leave no room for the review after the prompt "
                f"template ({len(tokenizer(empty)['input_ids'])} tokens); raise it or shorten prompt.template"
            )

    def render_raw(self, text: str) -> str:
        body = self.template.format(text=text, labels=label_phrase(self.labels))
        if not self.chat:
            return body
        # The model's own chat template, ending with the assistant header: the answer follows it.
        rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                                      add_generation_prompt=True)
        # Templates that write BOS themselves would get a second one when the text is tokenized (TRL and the
        # scorer tokenize with special tokens): keep the one the tokenizer adds.
        bos = self.tokenizer.bos_token
        if bos and rendered.startswith(bos) and self._tokenizer_adds_bos():
            rendered = rendered[len(bos):]
        return rendered

    def _tokenizer_adds_bos(self) -> bool:
        ids = self.tokenizer("a")["input_ids"]
        return bool(ids) and ids[0] == self.tokenizer.bos_token_id

    def label_token_ids(self, label: str) -> list[int]:
        """Tokens of ' label' as they appear after a prompt (tokenised jointly, like TRL does)."""
        prompt = self.render_raw("a")
        prompt_ids = self.tokenizer(prompt)["input_ids"]
        joint = self.tokenizer(prompt + completion(label))["input_ids"]
        if joint[: len(prompt_ids)] != prompt_ids:
            raise ConfigError(f"params: prompt.template: the answer ' {label}' merges with the prompt's last token; end the template with ':' or a newline")
        return joint[len(prompt_ids):]

    def fit_text(self, texts: list[str]) -> list[str]:
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [
            t if len(ids) <= self.text_budget else self.tokenizer.decode(ids[: self.text_budget])
            for t, ids in zip(texts, encoded)
        ]

    def prompts(self, texts: list[str]) -> list[str]:
        return [self.render_raw(t) for t in self.fit_text(texts)]
