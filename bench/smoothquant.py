"""SmoothQuant before dynamic int8 on ONNX Runtime (issue 25, an experiment, not a product path): per-channel
activation maxima of 256 training reviews are folded into the export's weights (RMSNorm gains into q/k/v and
gate/up, up_proj rows into down_proj, v_proj rows into o_proj; exact in float32), the graph re-exported with the
export stage's own write_onnx, then quantized dynamically (int8 per-channel weights, per-tensor activations, the
score head in float32) and scored on the 1,000 test reviews against metrics/predictions.jsonl.

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
alpha = float(sys.argv[1]); out = Path(f"/tmp/sq/a{alpha}")
if out.exists(): shutil.rmtree(out)
shutil.copytree(ROOT / "models/export", out, ignore=shutil.ignore_patterns("onnx"))
tok = transformers.PreTrainedTokenizerFast.from_pretrained(out)
model = transformers.AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
layers = model.model.layers
acts = {}
def hook(name):
    def f(mod, inp):
        x = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0)
        acts[name] = torch.maximum(acts[name], x) if name in acts else x
    return f
hs = []
for i, l in enumerate(layers):
    for n, m in (("q", l.self_attn.q_proj), ("o", l.self_attn.o_proj), ("gate", l.mlp.gate_proj), ("down", l.mlp.down_proj)):
        hs.append(m.register_forward_pre_hook(hook((i, n))))
texts = [json.loads(x)["text"] for x in open(ROOT / "data/prepared/train.jsonl")][:256]
with torch.inference_mode():
    for t in texts:
        model(**tok([t], return_tensors="pt"))
for h in hs: h.remove()
def scale(act, weights):
    w = torch.cat([m.weight.abs() for m in weights], 0).amax(0)
    return (act.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
cfg = model.config
with torch.no_grad():
    for i, l in enumerate(layers):
        a = l.self_attn
        s = scale(acts[(i, "q")], [a.q_proj, a.k_proj, a.v_proj])
        norm = l.input_layernorm; norm.weight.copy_((1 + norm.weight) / s - 1)
        for m in (a.q_proj, a.k_proj, a.v_proj): m.weight.mul_(s)
        m = l.mlp
        s = scale(acts[(i, "gate")], [m.gate_proj, m.up_proj])
        norm = l.pre_feedforward_layernorm; norm.weight.copy_((1 + norm.weight) / s - 1)
        for p in (m.gate_proj, m.up_proj): p.weight.mul_(s)
        s = scale(acts[(i, "down")], [m.down_proj])
        m.up_proj.weight.div_(s[:, None]); m.down_proj.weight.mul_(s)
        # o_proj: input channel (head h, d) comes from v's channel (kv(h), d): one scale per kv channel
        hd, nh, nkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        act = acts[(i, "o")].view(nkv, nh // nkv, hd).amax(1)
        w = a.o_proj.weight.abs().amax(0).view(nkv, nh // nkv, hd).amax(1)
        s = (act.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)  # [nkv, hd]
        a.v_proj.weight.div_(s.reshape(-1)[:, None])
        a.o_proj.weight.mul_(s[:, None, :].expand(nkv, nh // nkv, hd).reshape(-1))
model.save_pretrained(out)
from qlora_sentiment.model.onnx import write_onnx
write_onnx(out, 128)
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
src = out / "onnx/model.onnx"
head = [n.name for n in onnx.load(src, load_external_data=False).graph.node if n.op_type == "MatMul"][-1:]
logging.disable(logging.INFO)
quantize_dynamic(src, out / "dyn.onnx", weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                 nodes_to_exclude=head, use_external_data_format=True)
import throughput as T
reference = [json.loads(l) for l in open(ROOT / "metrics/predictions.jsonl")]
common = {"predictions": str(ROOT / "metrics/predictions.jsonl"), "n": 1000, "threads": 2, "model": str(ROOT / "models/export"),
          "dtype": "as-is", "backend": "onnx", "batch": 16}
for name, spec in (("smoothed fp32", {"onnx": str(src)}), ("smoothed dyn int8", {"onnx": str(out / "dyn.onnx")})):
    r = T.run({**common, **spec})
    if "error" in r: print(name, r); continue
    labels = r.pop("labels"); pos = r.pop("positive")
    ch = sum(x != y["predicted"] for x, y in zip(labels, reference))
    dp = max(abs(p - y["probabilities"]["positive"]) for p, y in zip(pos, reference))
    print(f"alpha {alpha} {name}: {len(labels)/r['seconds']:.2f} texts/s, changed {ch}, max dp {dp:.4f}", flush=True)
