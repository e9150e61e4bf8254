"""Model folders with random weights in a real architecture, to measure and test without downloading.

    python tools/random_model.py --arch mistral-7b --out /tmp/mistral-7b-random     # Mistral-7B's exact config
    python tools/random_model.py --arch mistral-tiny --out /tmp/mistral-tiny        # same code path, CPU-sized
    python tools/random_model.py --arch llama3-tiny --out /tmp/llama3-tiny          # a GPU preset's family, tiny

The `*-tiny` families stand in for the GPU presets' models in the CPU tests: the same architecture class, a
tokenizer of the same kind (BOS added or not, no pad token where the real one has none, the family's special
tokens) and the family's chat template. The tokenizer is a byte-level BPE trained on the offline Rotten Tomatoes
corpus with at most the config's vocab size, so every token id is valid for the embedding. Weights are bfloat16
on CUDA, float32 otherwise; the folder loads like any local model (`model.source: local`), in 4-bit with
bitsandbytes.
"""

import argparse
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
    specials: tuple     # special tokens, in id order from 0
    bos: str | None     # BOS token, added by the tokenizer when set
    eos: str
    pad: str | None     # None: the tokenizer ships without one (the project picks it)
    chat_template: str
    extra_config: dict = field(default_factory=dict)


FAMILIES = {
    "mistral-v01-tiny": Family("MistralConfig", "MistralForCausalLM", ("<unk>", "<s>", "</s>"), "<s>", "</s>", None,
                               MISTRAL_V01_CHAT),
    "mistral-v03-tiny": Family("MistralConfig", "MistralForCausalLM", ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
                               "<s>", "</s>", None, MISTRAL_V03_CHAT),
    "llama3-tiny": Family("LlamaConfig", "LlamaForCausalLM",
                          ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                           "<|eot_id|>", "<|finetune_right_pad_id|>"),
                          "<|begin_of_text|>", "<|eot_id|>", None, LLAMA3_CHAT, {"rope_theta": 500000.0}),
    "qwen2-tiny": Family("Qwen2Config", "Qwen2ForCausalLM", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                         None, "<|im_end|>", "<|endoftext|>", QWEN2_CHAT, {"tie_word_embeddings": True}),
    "gemma2-tiny": Family("Gemma2Config", "Gemma2ForCausalLM",
                          ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
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


def family_tokenizer(family: Family, vocab_size: int):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = train_bpe(vocab_size, family.specials)
    if family.bos:  # the tokenizer itself puts BOS in front, as these families' tokenizers do
        raw.post_processor = processors.TemplateProcessing(single=f"{family.bos} $A", pair=f"{family.bos} $A $B",
                                                           special_tokens=[(family.bos, raw.token_to_id(family.bos))])
    tokens = {"bos_token": family.bos, "eos_token": family.eos, "pad_token": family.pad,
              "unk_token": "<unk>" if "<unk>" in family.specials else None}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, **{k: v for k, v in tokens.items() if v})
    tokenizer.chat_template = family.chat_template
    return tokenizer


def build(arch: str, out: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    if arch in FAMILIES:
        family = FAMILIES[arch]
        tokenizer = family_tokenizer(family, TINY["vocab_size"])
        ids = {f"{k}_token_id": tokenizer.convert_tokens_to_ids(getattr(family, k)) for k in ("bos", "eos", "pad")
               if getattr(family, k)}
        config = getattr(transformers, family.config_class)(**{**TINY, **family.extra_config, **ids})
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
