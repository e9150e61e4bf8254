"""CPU inference paths side by side (issue 25 item 2): texts/s, peak RSS and agreement with the evaluate stage's
labels (`metrics/predictions.jsonl`) on the same test reviews, each variant in a child process of its own.

    python bench/throughput.py --adapter models/adapter --base models/base --export models/export

Variants: the 4-bit adapter (the previous default of `predict` and `serve`), the merged export on PyTorch in
float32, bf16 and with dynamic int8 Linear layers (`torch.ao.quantization.quantize_dynamic`), and on ONNX Runtime
(the export's onnx/model.onnx: today's default) in float32 at two batch sizes, with weight-only int8 and int4
(MatMulNBits, 8- and 4-bit blocks of 32, int8 compute) and with dynamic int8 MatMuls (per-channel weights, the score
head in float32);
the quantized graphs are made from onnx/model.onnx into a temporary folder first. Every variant scores the texts
through `SentimentAnalyzer.predict` (cleaning, prompt, padding, softmax: what the CLI does).
Writes bench/throughput.json; figures in BENCHMARKS.md ("predict: inference paths on the CPU").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
import torch
from qlora_sentiment.api.analyzer import SentimentAnalyzer
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
texts = [json.loads(line)["text"] for line in open(spec["predictions"], encoding="utf-8")][: spec["n"]]
model = SentimentAnalyzer.from_pretrained(spec["model"], base=spec.get("base"), backend=spec.get("backend", "torch"),
                                         threads=spec["threads"])
if spec.get("onnx"):  # a quantized copy of the export's graph
    from qlora_sentiment.model.onnx import OnnxClassifier
    model.scorer.model = OnnxClassifier(spec["onnx"], spec["threads"])
if spec["dtype"] == "bf16":
    model.scorer.model.to(torch.bfloat16)
elif spec["dtype"] == "int8":
    from torch.ao.quantization import quantize_dynamic
    model.scorer.model = quantize_dynamic(model.scorer.model, {torch.nn.Linear}, dtype=torch.qint8)
model.predict(texts[:spec["batch"]], batch_size=spec["batch"])  # warm-up: first-call allocations
started = time.perf_counter()
out = model.predict(texts, batch_size=spec["batch"])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "labels": [p["label"] for p in out],
                  "positive": [p["probabilities"].get("positive") for p in out],
                  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so every child would report
                  # the parent's peak (which loaded the ONNX graphs to quantize them)
                  "peak_rss_mb": next(int(line.split()[1]) for line in open("/proc/self/status")
                                      if line.startswith("VmHWM:")) / 1024}))
"""


def run(spec: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def score_head(source: Path) -> list[str]:
    """The score layer's MatMul (the graph's last): every quantized variant keeps it in float32."""
    import onnx

    return [n.name for n in onnx.load(source, load_external_data=False).graph.node if n.op_type == "MatMul"][-1:]


def dynamic_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic int8: per-channel int8 weights, per-tensor activation scales, the score head kept."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                     nodes_to_exclude=score_head(source), use_external_data_format=True)


def agreement(result: dict, reference: list[dict]) -> dict:
    """A child's result with texts/s, labels changed and max |dp| against the evaluate stage's predictions."""
    labels, positive = result.pop("labels"), result.pop("positive")
    return {**result, "texts_per_s": round(len(labels) / result["seconds"], 2),
            "labels_changed": sum(a != r["predicted"] for a, r in zip(labels, reference)),
            "max_abs_dp": round(max(abs(p - r["probabilities"]["positive"]) for p, r in zip(positive, reference)), 5)}


def score_variants(variants: list[tuple[str, dict]], common: dict, reference: list[dict]) -> list[dict]:
    """Each (name, spec) scored in a child process of its own: a row with the spec's settings (not its paths) and
    its agreement with the evaluate stage, printed as it comes."""
    rows = []
    for name, spec in variants:
        result = run({**common, **spec})
        if "error" not in result:
            result = agreement(result, reference)
        rows.append({"variant": name, **{k: v for k, v in spec.items() if k not in ("model", "onnx")}, **result})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def quantized_graphs(export: Path, folder: Path) -> dict[str, Path]:
    """The export's float32 graph quantized two ways by ONNX Runtime's own tools (bench only, not a product path)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.disable(logging.INFO)  # both quantizers log every node they visit
    source = export / "onnx" / "model.onnx"
    head = score_head(source)
    paths = {"dynamic": folder / "dynamic.onnx", "weight-only": folder / "weight-only.onnx",
             "weight-only-4bit": folder / "weight-only-4bit.onnx"}
    dynamic_int8(source, paths["dynamic"])
    for name, bits in (("weight-only", 8), ("weight-only-4bit", 4)):
        config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=bits)
        quantizer = MatMulNBitsQuantizer(onnx.load(source), nodes_to_exclude=head, algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(paths[name]), use_external_data_format=True)
    logging.disable(logging.NOTSET)
    return paths


def print_table(rows: list[dict], n: int) -> None:
    """The rows as BENCHMARKS.md shows them, ratios against the first (the adapter); a batch column if rows have one."""
    batch = all("batch" in r for r in rows)
    cells = ["variant", *(["batch"] if batch else []), "texts/s", "vs adapter", "peak RSS MB",
             f"labels changed (of {n})", "max |dp|"]
    print("\n| " + " | ".join(cells) + " |\n" + "|---" * len(cells) + "|")
    anchor = rows[0].get("texts_per_s")
    for r in rows:
        first = [r["variant"], *([str(r["batch"])] if batch else [])]
        if "error" in r:
            print("| " + " | ".join([*first, f"error: {r['error']}", "", "", "", ""]) + " |")
            continue
        ratio = f"{r['texts_per_s'] / anchor:.2f}×" if anchor else "–"
        print("| " + " | ".join([*first, str(r["texts_per_s"]), ratio, f"{r['peak_rss_mb']:.0f}",
                                 str(r["labels_changed"]), str(r["max_abs_dp"])]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path, default=ROOT / "models/adapter")
    parser.add_argument("--base", type=Path, default=ROOT / "models/base")
    parser.add_argument("--export", type=Path, default=ROOT / "models/export")
    parser.add_argument("--predictions", type=Path, default=ROOT / "metrics/predictions.jsonl")
    parser.add_argument("--n", type=int, default=1000, help="test reviews scored per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "throughput.json")
    args = parser.parse_args()
    reference = [json.loads(line) for line in args.predictions.open(encoding="utf-8")][: args.n]
    common = {"predictions": str(args.predictions), "n": args.n, "threads": args.threads}
    scratch = Path(tempfile.mkdtemp(prefix="throughput-"))
    graphs = quantized_graphs(args.export, scratch)
    export, ort = {"model": str(args.export), "dtype": "as-is"}, {"model": str(args.export), "dtype": "as-is",
                                                                   "backend": "onnx"}
    variants = [
        ("adapter (4-bit NF4 + LoRA, the previous default)", {"model": str(args.adapter), "base": str(args.base),
                                                             "dtype": "as-is", "batch": 16}),
        ("export, PyTorch float32", {**export, "batch": 16}),
        ("export, PyTorch bf16", {**export, "dtype": "bf16", "batch": 16}),
        ("export, PyTorch dynamic int8", {**export, "dtype": "int8", "batch": 16}),
        ("export, ONNX Runtime float32 (today's default)", {**ort, "batch": 16}),
        ("export, ONNX Runtime float32, batch 64", {**ort, "batch": 64}),
        ("export, ONNX Runtime weight-only int8", {**ort, "onnx": str(graphs["weight-only"]), "batch": 16}),
        ("export, ONNX Runtime weight-only int4", {**ort, "onnx": str(graphs["weight-only-4bit"]), "batch": 16}),
        ("export, ONNX Runtime dynamic int8", {**ort, "onnx": str(graphs["dynamic"]), "batch": 16}),
    ]
    rows = score_variants(variants, common, reference)
    print_table(rows, args.n)
    import onnxruntime
    import torch

    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "onnxruntime": onnxruntime.__version__}
    shutil.rmtree(scratch)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
