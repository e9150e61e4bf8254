"""GPU memory a preset needs, ESTIMATED from the models' published configs (no GPU was available to measure).

    python tools/gpu_memory.py            # the table in docs/gpu.md

Weights: linear layers in NF4 with double quantization (4.127 bits a parameter). Everything else (embeddings, LM
head, norms) in fp32: PEFT's prepare_model_for_kbit_training casts every bf16/fp16 parameter of a 4-bit model to
fp32 (peft/utils/other.py), so a 128k-vocabulary embedding and LM head take 4 bytes a parameter, not 2.
Training state: LoRA r=16 on every linear layer, fp32 weights and gradients, 8-bit AdamW (2 bytes a parameter).
Activations: ~373 KB per token per layer measured for a Mistral-7B-shaped layer (NF4, LoRA r=16, bf16 autocast,
SDPA attention, after prepare_model_for_kbit_training; scaled by layer width for the others). Gemma 2 runs eager
attention (its logit soft-capping), which keeps the attention scores for backward: ~22 bytes per (head, query,
key) element per layer (bf16 scores, the soft-cap's division, tanh and product, the fp32 softmax and its bf16
cast). With gradient checkpointing only each layer's input (bf16) is kept, plus one layer's activations while it
is recomputed. Overhead: CUDA context and allocator slack, 1.5 GB. TRL projects only the answer positions through
the LM head, so logits are small.
"""

from dataclasses import dataclass

GB = 1e9
MISTRAL_LAYER_ACTIVATIONS = 373e3  # bytes per token per layer, measured on the CPU for a Mistral-7B-shaped layer
EAGER_SCORE_BYTES = 22  # per attention-score element kept for backward by eager attention with soft-capping
OVERHEAD = 1.5 * GB


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    q_dim: int
    kv_dim: int
    tied: bool
    heads: int
    eager: bool = False  # eager attention (Gemma 2): the scores are materialised and kept

    def linear_params(self) -> int:
        attention = 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    def lora_params(self, r: int = 16) -> int:
        h, i = self.hidden, self.intermediate
        per_layer = r * ((h + self.q_dim) * 2 + (h + self.kv_dim) * 2 + (h + i) * 3)
        return self.layers * per_layer

    def width(self) -> float:  # activations per token scale with the layer's widths
        return (4 * self.hidden + self.intermediate) / (4 * 4096 + 14336)


MODELS = {  # from each repository's config.json
    "mistral_7b / mistral_7b_v03": Shape(32768, 4096, 14336, 32, 4096, 1024, False, 32),
    "llama31_8b": Shape(128256, 4096, 14336, 32, 4096, 1024, False, 32),
    "qwen25_7b": Shape(152064, 3584, 18944, 28, 3584, 512, False, 28),
    "gemma2_9b": Shape(256000, 3584, 14336, 42, 4096, 2048, True, 16, eager=True),
}


def estimate(shape: Shape, batch: int, length: int, checkpointing: bool) -> float:
    weights = shape.linear_params() * 4.127 / 8 + shape.vocab * shape.hidden * (1 if shape.tied else 2) * 4
    lora = shape.lora_params() * (4 + 4 + 2)
    tokens = batch * length
    per_layer = MISTRAL_LAYER_ACTIVATIONS * shape.width() * tokens
    if shape.eager:
        per_layer += batch * shape.heads * length * length * EAGER_SCORE_BYTES
    if checkpointing:
        activations = shape.layers * tokens * shape.hidden * 2 + per_layer
    else:
        activations = shape.layers * per_layer
    return (weights + lora + activations + OVERHEAD) / GB


def main() -> None:
    settings = [("24 GB", 4, 512, True), ("48 GB", 8, 512, True), ("80 GB", 4, 512, False)]
    print("| preset | " + " | ".join(f"{g}: batch {b} x {n}, checkpointing {'on' if c else 'off'}"
                                     for g, b, n, c in settings) + " |")
    print("|---|" + "---|" * len(settings))
    for name, shape in MODELS.items():
        print(f"| {name} | " + " | ".join(f"~{estimate(shape, b, n, c):.0f} GB" for _, b, n, c in settings) + " |")


if __name__ == "__main__":
    main()
