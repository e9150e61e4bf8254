"""A model folder with random weights in a real architecture, to measure speed and memory without downloading.

    python tools/random_model.py --arch mistral-7b --out /tmp/mistral-7b-random     # Mistral-7B's exact config
    python tools/random_model.py --arch mistral-tiny --out /tmp/mistral-tiny        # same code path, CPU-sized

The tokenizer is a byte-level BPE trained on the offline Rotten Tomatoes corpus with at most the config's vocab
size, so every token id is valid for the embedding. Weights are bfloat16 on CUDA, float32 otherwise; the folder
loads like any local model (`model.source: local`), in 4-bit with bitsandbytes.
"""

import argparse
from pathlib import Path

# mistralai/Mistral-7B-Instruct-v0.1's config.json
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768, rope_theta=10000.0,
                  sliding_window=4096, rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False,
                  bos_token_id=1, eos_token_id=2)
ARCHS = {
    "mistral-7b": MISTRAL_7B,
    "mistral-tiny": {**MISTRAL_7B, "hidden_size": 128, "intermediate_size": 448, "num_hidden_layers": 4,
                     "num_attention_heads": 4, "num_key_value_heads": 2},
}


def build_tokenizer(vocab_size: int):
    import pandas as pd
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from qlora_sentiment.core.packages import package_file
    from qlora_sentiment.data.sources import OFFLINE_CORPORA

    corpus = OFFLINE_CORPORA["rotten_tomatoes_full"]
    texts = pd.read_csv(package_file(corpus.package, corpus.files["all"]))["text"].dropna().astype(str).tolist()
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def build(arch: str, out: Path) -> Path:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    config = MistralConfig(**ARCHS[arch])
    with torch.device("cuda" if cuda else "cpu"):
        model = MistralForCausalLM(config).to(torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(out)
    build_tokenizer(config.vocab_size).save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(f"wrote {build(args.arch, args.out)}")


if __name__ == "__main__":
    main()
