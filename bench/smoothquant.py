"""SmoothQuant before dynamic int8 on ONNX Runtime (issue 25, an experiment, not a product path): per-channel
activation maxima of 256 training reviews are folded into the export's weights (RMSNorm gains into q/k/v and
gate/up, up_proj rows into down_proj, v_proj rows into o_proj; exact in float32), the graph re-exported with the
export stage's own write_onnx, then quantized as bench/throughput.py's dynamic int8 variant (int8 per-channel
weights, per-tensor activations, the score head in float32) and scored on the 1,000 test reviews against
metrics/predictions.jsonl, as bench/throughput.py scores its variants.

    python bench/smoothquant.py 0.5      # migration strength alpha; the graphs go to /tmp/sq/a0.5/

Figures: BENCHMARKS.md ("predict: inference paths on the CPU").
"""

import json
import logging
import shutil
import sys
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import throughput  # noqa: E402  (bench/ is not a package)


def activation_maxima(model, tokenizer, texts: list[str]) -> dict:
    """{(layer, 'q'|'o'|'gate'|'down'): per-channel max |input|} of the projections that read each input."""
    maxima, hooks = {}, []

    def hook(key):
        def record(module, inputs):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            maxima[key] = torch.maximum(maxima[key], x) if key in maxima else x
        return record

    for i, layer in enumerate(model.model.layers):
        for name, module in (("q", layer.self_attn.q_proj), ("o", layer.self_attn.o_proj),
                             ("gate", layer.mlp.gate_proj), ("down", layer.mlp.down_proj)):
            hooks.append(module.register_forward_pre_hook(hook((i, name))))
    with torch.inference_mode():
        for text in texts:  # one at a time: no padding positions in the maxima
            model(**tokenizer([text], return_tensors="pt"))
    for h in hooks:
        h.remove()
    return maxima


def scale(act, weight_max, alpha: float):
    return (act.clamp(min=1e-5) ** alpha / weight_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)


def weight_max(*linears):
    return torch.cat([m.weight.abs() for m in linears], 0).amax(0)


@torch.no_grad()
def smooth(model, maxima: dict, alpha: float) -> None:
    """Divide each projection's input channels by s and multiply its weight columns by s (Gemma's RMSNorm
    multiplies by 1 + weight, so that gain absorbs 1/s for the layers it feeds)."""
    cfg = model.config
    hd, nh, nkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
    for i, layer in enumerate(model.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        for norm, linears, key in ((layer.input_layernorm, (attn.q_proj, attn.k_proj, attn.v_proj), "q"),
                                   (layer.pre_feedforward_layernorm, (mlp.gate_proj, mlp.up_proj), "gate")):
            s = scale(maxima[(i, key)], weight_max(*linears), alpha)
            norm.weight.copy_((1 + norm.weight) / s - 1)
            for linear in linears:
                linear.weight.mul_(s)
        s = scale(maxima[(i, "down")], weight_max(mlp.down_proj), alpha)  # down reads act(gate) * up: up's rows
        mlp.up_proj.weight.div_(s[:, None])
        mlp.down_proj.weight.mul_(s)
        # o_proj's input channel (head h, d) is v's channel (kv(h), d): one scale per kv channel, shared by its heads
        act = maxima[(i, "o")].view(nkv, nh // nkv, hd).amax(1)
        s = scale(act, weight_max(attn.o_proj).view(nkv, nh // nkv, hd).amax(1), alpha)
        attn.v_proj.weight.div_(s.reshape(-1)[:, None])
        attn.o_proj.weight.mul_(s[:, None, :].expand(nkv, nh // nkv, hd).reshape(-1))


def smoothed_graph(export: Path, out: Path, alpha: float) -> Path:
    """The export with activation maxima of 256 training reviews folded into its weights, written to `out` with
    the export stage's own write_onnx: the smoothed float32 graph's path."""
    from qlora_sentiment.model.onnx import write_onnx

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(export, out, ignore=shutil.ignore_patterns("onnx"))
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(out)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    texts = [json.loads(line)["text"] for line in open(ROOT / "data/prepared/train.jsonl", encoding="utf-8")][:256]
    smooth(model, activation_maxima(model, tokenizer, texts), alpha)
    model.save_pretrained(out)
    max_length = json.loads((export / "qlora_sentiment.json").read_text())["max_length"]  # as the export stage
    return write_onnx(out, max_length)


def main() -> None:
    alpha = float(sys.argv[1])
    export, out = ROOT / "models/export", Path(f"/tmp/sq/a{alpha}")
    source = smoothed_graph(export, out, alpha)
    logging.disable(logging.INFO)  # the quantizer logs every node it visits
    throughput.dynamic_int8(source, out / "dynamic.onnx")
    predictions = ROOT / "metrics/predictions.jsonl"
    reference = [json.loads(line) for line in predictions.open(encoding="utf-8")]
    common = {"predictions": str(predictions), "n": len(reference), "threads": 2, "model": str(export),
              "dtype": "as-is", "backend": "onnx", "batch": 16}
    variants = [("smoothed float32", {"onnx": str(source)}),
                ("smoothed dynamic int8", {"onnx": str(out / "dynamic.onnx")})]
    for r in throughput.score_variants(variants, common, reference):
        if "error" in r:
            print(f"alpha {alpha} {r['variant']}: {r['error']}")
            continue
        print(f"alpha {alpha} {r['variant']}: {r['texts_per_s']:.2f} texts/s, {r['labels_changed']} labels changed, "
              f"max |dp| {r['max_abs_dp']:.4f}", flush=True)


if __name__ == "__main__":
    main()
