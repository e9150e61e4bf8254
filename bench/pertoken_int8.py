"""int8 with one activation scale per token (issue 25, an experiment, not a product path).

ONNX Runtime's dynamic int8 (bench/throughput.py) gives each MatMul's input one scale for the whole batch; a few
positions carry activations far larger than the rest and flatten every other token's values. Here each MatMul of
the export's graph (except the score head) becomes: per-token scale s = max|x| / 127 over the row (ReduceMax), x
rounded to uint8 around 128, MatMulInteger with per-output-channel symmetric int8 weights, then rescaled by s and
the weight's scale. Built with plain ONNX ops, so ONNX Runtime's own int8 GEMM runs it. Side by side in one run on
the 1,000 test reviews, against the adapter (the previous default) and the float32 graph (today's default):

    python bench/pertoken_int8.py            # bench/pertoken_int8.json; graphs in a temporary folder

Variants: per-token int8; the same with 7-bit weights (AVX2 without VNNI multiplies uint8 by int8 in 16-bit pairs,
which 8-bit weights can overflow; 7 bits cannot); SmoothQuant (alpha 0.5, bench/smoothquant.py) before per-token
int8; and that with the MLP's down projection (its input is the largest-ranged) kept in float32.
Figures: BENCHMARKS.md ("predict: inference paths on the CPU").
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import throughput  # noqa: E402  (bench/ is not a package)

CONSTANTS = {"pt_eps": (1e-30, np.float32), "pt_128": (128.0, np.float32), "pt_0": (0.0, np.float32),
             "pt_127": (127.0, np.float32), "pt_255": (255.0, np.float32), "pt_zp": (128, np.uint8),
             "pt_axes": ([-1], np.int64)}


def per_token_int8(source: Path, target: Path, weight_bits: int = 8, float_inner: tuple[int, ...] = ()) -> int:
    """Rewrite every weight MatMul of `source` (not the score head, nor those whose inner size is in
    `float_inner`) as per-token int8; returns how many were rewritten."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(source)
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    skip = set(throughput.score_head(source))
    levels = 2 ** (weight_bits - 1) - 1
    graph.initializer.extend(numpy_helper.from_array(np.array(v, t), n) for n, (v, t) in CONSTANTS.items())
    nodes, count = [], 0
    for node in graph.node:
        w = numpy_helper.to_array(weights[node.input[1]]) if node.op_type == "MatMul" and \
            node.input[1] in weights and node.name not in skip else None
        if w is None or w.shape[0] in float_inner:
            nodes.append(node)
            continue
        count += 1
        p, (x, y) = f"pt{count}_", (node.input[0], node.output[0])
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-30).astype(np.float32) / levels  # per output channel
        w_int = np.clip(np.round(w / w_scale), -levels, levels).astype(np.int8)
        graph.initializer.extend([numpy_helper.from_array(w_int, p + "w"), numpy_helper.from_array(w_scale, p + "ws")])
        op = helper.make_node
        nodes += [op("Abs", [x], [p + "abs"]), op("ReduceMax", [p + "abs", "pt_axes"], [p + "max"], keepdims=1),
                  op("Max", [p + "max", "pt_eps"], [p + "max1"]), op("Div", [p + "max1", "pt_127"], [p + "s"]),
                  op("Div", [x, p + "s"], [p + "xs"]), op("Round", [p + "xs"], [p + "xr"]),
                  op("Add", [p + "xr", "pt_128"], [p + "xo"]), op("Clip", [p + "xo", "pt_0", "pt_255"], [p + "xc"]),
                  op("Cast", [p + "xc"], [p + "xq"], to=TensorProto.UINT8),
                  op("MatMulInteger", [p + "xq", p + "w", "pt_zp"], [p + "acc"]),
                  op("Cast", [p + "acc"], [p + "accf"], to=TensorProto.FLOAT),
                  op("Mul", [p + "accf", p + "s"], [p + "y"]), op("Mul", [p + "y", p + "ws"], [y])]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]  # the float weights that were rewritten go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(target), save_as_external_data=True, location=target.name + ".data")
    return count


def main() -> None:
    import smoothquant

    export, predictions = ROOT / "models/export", ROOT / "metrics/predictions.jsonl"
    reference = [json.loads(line) for line in predictions.open(encoding="utf-8")]
    scratch = Path(tempfile.mkdtemp(prefix="pertoken-"))
    source = export / "onnx" / "model.onnx"
    smoothed = smoothquant.smoothed_graph(export, scratch / "smoothed", 0.5)
    down = json.loads((export / "config.json").read_text())["intermediate_size"]  # down_proj's inner size
    graphs = {"per-token int8": (source, 8, ()), "per-token int8, 7-bit weights": (source, 7, ()),
              "SmoothQuant 0.5 + per-token int8": (smoothed, 8, ()),
              "SmoothQuant 0.5 + per-token int8, down_proj in float32": (smoothed, 8, (down,))}
    common = {"predictions": str(predictions), "n": len(reference), "threads": 2, "dtype": "as-is", "batch": 16}
    variants = [("adapter (4-bit NF4 + LoRA, the previous default)",
                 {"model": str(ROOT / "models/adapter"), "base": str(ROOT / "models/base")}),
                ("export, ONNX Runtime float32 (today's default)", {"model": str(export), "backend": "onnx"})]
    for i, (name, (graph, bits, float_inner)) in enumerate(graphs.items()):
        target = scratch / f"graph{i}.onnx"
        count = per_token_int8(graph, target, bits, float_inner)
        variants.append((f"{name} ({count} MatMuls)", {"model": str(export), "backend": "onnx", "onnx": str(target)}))
    rows = throughput.score_variants(variants, common, reference)
    throughput.print_table(rows, len(reference))
    shutil.rmtree(scratch)
    (ROOT / "bench/pertoken_int8.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
