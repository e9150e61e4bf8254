"""Saving tokenizers so the saved folder depends on the tokenizer alone."""

from __future__ import annotations


def save_tokenizer(tokenizer, out) -> None:
    """save_pretrained without the loading flags it would record (HF_HUB_OFFLINE turns into local_files_only:
    true), so the saved folder depends on the tokenizer only, not on the environment it was loaded in."""
    for key in ("local_files_only", "token", "cache_dir", "_commit_hash"):
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.save_pretrained(out)
