"""Per-label probabilities for a batch of texts: the one scoring implementation behind evaluate and predict.

Generative head: no free generation. Every label's answer tokens are scored in one forward pass and a softmax
over the labels' log-likelihoods gives probabilities. When each answer is a single token (the usual case) the
forward pass covers the prompts only and reads the next-token logits; otherwise each (prompt, answer) pair is
one row of the same batch. Classifier head: softmax of the head's logits. Aspect tasks score (text, aspect)
pairs: the prompt names the aspect, the classifier reads the pair as sentence-pair classifiers do (the text cut
first, never the aspect).

Every forward pass is one pass over whole prompts: `use_cache=False`, so no KV cache is built (transformers
otherwise fills one from `config.use_cache`, for both heads: at batch 16 x 512 a Llama-8B's is 1 GiB in bf16 that
nothing reads). The precision is evaluate's wherever the scorer runs: a model prepared for 4-bit training holds its
frozen weights in float32 (PEFT's k-bit preparation upcasts them), so during training the scorer casts them back to
the dtype they were loaded in (`remember_load_dtypes`, `load_precision`) and autocasts as evaluate does.
"""

from __future__ import annotations

import contextlib

import numpy as np

from qlora_sentiment.model.prompts import PromptFormatter

# Attribute set on a parameter: the half dtype it was loaded in, before PEFT's k-bit preparation upcast it.
LOAD_DTYPE = "_qlora_load_dtype"


def remember_load_dtypes(model) -> None:
    """Mark every bf16/fp16 parameter (not the packed 4-bit ones) with its dtype; call it before
    prepare_model_for_kbit_training casts them to float32 (the Parameter objects stay, their data changes)."""
    import torch

    for param in model.parameters():
        if param.dtype in (torch.bfloat16, torch.float16) and type(param).__name__ != "Params4bit":
            setattr(param, LOAD_DTYPE, param.dtype)


@contextlib.contextmanager
def load_precision(model):
    """Frozen parameters marked by remember_load_dtypes back in their loaded dtype while the block runs: the model
    then holds the dtypes a freshly loaded adapter holds (evaluate's), and `_autocast` applies as it does there.
    Exact both ways: a frozen weight is its loaded half value upcast, so the downcast and the restoring upcast are
    lossless; trainable weights (LoRA, a trained head: float32 master weights) are left alone. Nothing is marked
    on a float32 run, a model not prepared for k-bit training, or a loaded adapter: then nothing changes."""
    import torch

    cast = []
    for param in model.parameters():
        dtype = getattr(param, LOAD_DTYPE, None)
        if dtype is not None and param.dtype != dtype and not param.requires_grad:
            cast.append((param, param.dtype))
    with torch.no_grad():  # outside inference_mode: the restored weights must stay usable for training
        for param, _ in cast:
            param.data = param.data.to(getattr(param, LOAD_DTYPE))
    try:
        yield
    finally:
        with torch.no_grad():
            for param, dtype in cast:
                param.data = param.data.to(dtype)


def _batches(lengths: list[int], batch_size: int):
    """Index batches of similar length (less padding); the caller restores the original order."""
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _pad(rows: list[list[int]], pad_id: int, left: bool):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(r)
        mask[i, span] = 1
    return ids, mask


class LabelScorer:
    def __init__(self, model, tokenizer, head: str, labels: list[str], template: str, max_length: int,
                 chat: bool = False):
        self.model, self.tokenizer, self.head, self.labels = model, tokenizer, head, labels
        self.max_length = max_length
        if head == "generative":
            self.formatter = PromptFormatter(tokenizer, template, labels, max_length, chat)
            self.answers = self.formatter.answers
            self.single_token = (all(len(a) == 1 for a in self.answers)
                                 and len({a[0] for a in self.answers}) == len(labels))

    def _encode(self, texts: list[str], aspects: list[str] | None = None) -> list[list[int]]:
        if self.head == "generative":
            return self.formatter.encode(texts, aspects)
        if aspects is None:
            return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return self.tokenizer(texts, aspects, truncation="only_first", max_length=self.max_length)["input_ids"]

    def predict_proba(self, texts: list[str], batch_size: int = 16, aspects: list[str] | None = None) -> np.ndarray:
        import torch

        encoded = self._encode(list(texts), None if aspects is None else list(aspects))
        out = np.zeros((len(encoded), len(self.labels)), dtype=np.float64)
        self.model.eval()
        # load_precision first: its casts happen outside inference_mode, and _autocast sees the model's dtypes in it
        with load_precision(self.model), torch.inference_mode(), self._autocast():
            for index in _batches([len(e) for e in encoded], batch_size):
                rows = [encoded[i] for i in index]
                if self.head == "classifier":
                    scores = self._classifier_logits(rows)
                elif self.single_token:
                    scores = self._next_token_logprobs(rows)
                else:
                    scores = self._answer_logprobs(rows)
                # float64 so each row sums to 1 within what scikit-learn checks
                out[index] = torch.softmax(scores.double(), dim=-1).cpu().numpy()
        return out

    def score_rows(self, rows: list[dict], batch_size: int = 16) -> np.ndarray:
        """predict_proba of prepared examples ({"text": ...} or, in the aspect tasks, with "aspect")."""
        aspects = [r["aspect"] for r in rows] if rows and "aspect" in rows[0] else None
        return self.predict_proba([r["text"] for r in rows], batch_size, aspects)

    def _autocast(self):
        """Mixed precision as in training: a model holding both float32 and bf16/fp16 weights (4-bit base in a
        half compute dtype, float32 LoRA or classifier head) runs under autocast, else a matmul meets two dtypes."""
        import contextlib

        import torch

        dtypes = {p.dtype for p in self.model.parameters() if p.is_floating_point()}
        half = dtypes & {torch.bfloat16, torch.float16}
        if torch.float32 not in dtypes or not half:
            return contextlib.nullcontext()
        return torch.autocast(self._device().type, dtype=half.pop())

    def _device(self):
        return next(self.model.parameters()).device

    def _classifier_logits(self, rows):
        ids, mask = _pad(rows, self.tokenizer.pad_token_id, left=False)
        return self.model(input_ids=ids.to(self._device()), attention_mask=mask.to(self._device()),
                          use_cache=False).logits

    def _next_token_logprobs(self, rows):
        import torch

        # Left padding puts every prompt's last token in the last column, so only that column's logits are made.
        ids, mask = _pad(rows, self.tokenizer.pad_token_id, left=True)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self._device()
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                            position_ids=positions.to(device), logits_to_keep=1, use_cache=False).logits[:, -1, :]
        answer_ids = torch.tensor([a[0] for a in self.answers], device=logits.device)
        return torch.log_softmax(logits.float(), dim=-1)[:, answer_ids]

    def _answer_logprobs(self, rows):
        import torch

        # One row per (prompt, answer); the summed log-probability of the answer tokens is that label's score.
        pairs = [r + a for r in rows for a in self.answers]
        ids, mask = _pad(pairs, self.tokenizer.pad_token_id, left=False)
        device = self._device()
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        scores = torch.zeros(len(pairs), device=logprobs.device)
        for p, pair in enumerate(pairs):
            answer = self.answers[p % len(self.answers)]
            start = len(pair) - len(answer)
            targets = torch.tensor(answer, device=logprobs.device)
            scores[p] = logprobs[p, start - 1:len(pair) - 1].gather(-1, targets[:, None]).sum()
        return scores.view(len(rows), len(self.answers))
