"""GPU memory a preset needs, ESTIMATED from the models' published configs (no GPU was available to measure).

    python tools/gpu_memory.py            # the two memory tables in docs/gpu.md

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

Scoring (evaluate, baseline; eval.batch_size x max_length): no KV cache, no gradients, the base as loaded (4-bit
linear layers, the rest in bf16). Only one layer's tensors live at a time: ~8 bytes per token per MLP unit (the
gate/up outputs, their LoRA sums and the fp32 copy PEFT makes of the down projection's input) and ~16 per token
per hidden unit (residual, RMSNorm's fp32), plus one de-quantized weight; Gemma 2's eager attention adds its scores
(~12 bytes an element while they live). The generative head reads one position's logits (`logits_to_keep=1`).
Validation during training scores the same way (the frozen weights cast back to bf16 while it scores, LoRA and its
optimizer state beside them). "Before" is what validation took until issue 38: float32 compute and a KV cache.
Export: the merge (model/merge_memory.py) de-quantizes the whole model into bf16 beside its 4-bit copy, 2.56 bytes
a parameter; on the GPU when that is under 90 % of the free memory (assumed: the card less 0.5 GB of context),
else on the CPU, in that much host RAM.
"""

from dataclasses import dataclass

GB = 1e9
MISTRAL_LAYER_ACTIVATIONS = 373e3  # bytes per token per layer, measured on the CPU for a Mistral-7B-shaped layer
EAGER_SCORE_BYTES = 22  # per attention-score element kept for backward by eager attention with soft-capping
OVERHEAD = 1.5 * GB
EAGER_INFERENCE_SCORE_BYTES = 12  # per attention-score element while one eager layer runs without gradients


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


def parameters(shape: Shape) -> int:  # what merge_memory.parameter_count counts (norms and biases left out)
    return shape.linear_params() + shape.vocab * shape.hidden * (1 if shape.tied else 2)


def scoring(shape: Shape, batch: int, length: int, training: bool = False, before: bool = False) -> float:
    """Peak of one scoring pass. training: validation during training (LoRA state resident; the cast of the
    float32 weights to bf16 holds the embedding twice for a moment). before: float32 compute with a KV cache."""
    tokens, width = batch * length, 4 if before else 2
    head = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    weights = shape.linear_params() * 4.127 / 8 + head * width + shape.lora_params() * 4  # LoRA: float32
    live = tokens * (8 * shape.intermediate + 16 * shape.hidden) * width / 2 + shape.intermediate * shape.hidden * width
    if shape.eager:
        live += batch * shape.heads * length * length * EAGER_INFERENCE_SCORE_BYTES * width / 2
    cache = shape.layers * 2 * tokens * shape.kv_dim * width if before else 0
    peak = weights + live + cache
    if training and not before:  # the cast: float32 frozen weights (as training holds them) + the embedding in bf16
        peak = max(peak, weights + head * 2 + shape.vocab * shape.hidden * 2)
    if training:
        peak += shape.lora_params() * (4 + 2)  # gradients, 8-bit AdamW
    return (peak + OVERHEAD) / GB


def merge_place(need: float, card_gb: int) -> str:
    return "GPU" if need <= 0.9 * (card_gb - 0.5) * GB else "CPU"


def main() -> None:
    settings = [("24 GB", 4, 512, True), ("48 GB", 8, 512, True), ("80 GB", 4, 512, False)]
    print("| preset | " + " | ".join(f"{g}: batch {b} x {n}, checkpointing {'on' if c else 'off'}"
                                     for g, b, n, c in settings) + " |")
    print("|---|" + "---|" * len(settings))
    for name, shape in MODELS.items():
        print(f"| {name} | " + " | ".join(f"~{estimate(shape, b, n, c):.0f} GB" for _, b, n, c in settings) + " |")
    print()
    print("| preset | scoring, batch 16 x 512, bf16, no cache (evaluate, baseline; any card) | validation during "
          "training, the same (before: fp32 + KV cache) | export merge, bf16 beside the 4-bit copy | merges on a "
          "24 GB / 48 GB / 80 GB card |")
    print("|---|---|---|---|---|")
    for name, shape in MODELS.items():
        need = parameters(shape) * 2.56
        print(f"| {name} | ~{scoring(shape, 16, 512):.0f} GB | ~{scoring(shape, 16, 512, True):.0f} GB "
              f"(~{scoring(shape, 16, 512, True, True):.0f} GB) | ~{need / 2**30:.1f} GiB "
              f"({parameters(shape) / 1e9:.2f}B parameters) | "
              + " / ".join(merge_place(need, gb) for gb in (24, 48, 80)) + " |")


if __name__ == "__main__":
    main()
