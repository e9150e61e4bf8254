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
int8; and that with the MLP's down projection (its input is the largest-ranged) kept in float32; and those two
with the MatMuls that read one input fused (one quantization of q/k/v's input, one of gate/up's, one wider int8
product each: the same numbers, fewer and larger kernels); and the fused graph with finer activation scales, one per
block of a row's inputs (down_proj's in blocks of 256; every MatMul's in blocks of 128).
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


def per_token_int8(source: Path, target: Path, weight_bits: int = 8, float_inner: tuple[int, ...] = (),
                   fuse: bool = False, act_blocks: dict[int, int] | None = None) -> int:
    """Rewrite every weight MatMul of `source` (not the score head, nor those whose inner size is in
    `float_inner`) as per-token int8; returns how many were rewritten. `fuse`: MatMuls that read the same input
    (q/k/v, gate/up) share one quantization of it and one MatMulInteger over their weights side by side, whose
    output is split again (fewer, wider int8 products). `act_blocks`: inner size -> activation block length (see
    _int8_block) for the MatMuls of that inner size."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(source)
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    skip = set(throughput.score_head(source))
    graph.initializer.extend(numpy_helper.from_array(np.array(v, t), n) for n, (v, t) in CONSTANTS.items())
    groups: dict[str, list] = {}  # the rewritten MatMuls, by input (one each unless fused)
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights and node.name not in skip and \
                weights[node.input[1]].dims[0] not in float_inner:
            groups.setdefault(node.input[0] if fuse else node.name, []).append(node)
    first = {members[0].name: members for members in groups.values()}
    rewritten = {node.name for members in groups.values() for node in members}
    nodes = []
    for node in graph.node:
        if node.name in first:
            members = first[node.name]
            block = (act_blocks or {}).get(weights[members[0].input[1]].dims[0])
            nodes += _int8_block(graph, f"pt{len(nodes)}_", members, weights, weight_bits, block)
        elif node.name not in rewritten:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]  # the float weights that were rewritten go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(target), save_as_external_data=True, location=target.name + ".data")
    return len(rewritten)


def _int8_block(graph, p: str, members: list, weights: dict, weight_bits: int, act_block: int | None = None) -> list:
    """Nodes that compute `members` (MatMuls of one input x) in int8: x's per-row scale and uint8 copy, one
    MatMulInteger against the members' per-channel int8 weights side by side, the rescales, a Split if several.
    `act_block`: x's row is cut into blocks of this many inputs, each with its own scale and int8 product, summed in
    float32 (finer activation scales, more kernels)."""
    from onnx import helper, numpy_helper

    levels = 2 ** (weight_bits - 1) - 1
    w = np.concatenate([numpy_helper.to_array(weights[m.input[1]]) for m in members], axis=1)
    w_scale = np.maximum(np.abs(w).max(axis=0), 1e-30).astype(np.float32) / levels  # per output channel
    w_int = np.clip(np.round(w / w_scale), -levels, levels).astype(np.int8)
    graph.initializer.append(numpy_helper.from_array(w_scale, p + "ws"))
    op, x = helper.make_node, members[0].input[0]
    y = members[0].output[0] if len(members) == 1 else p + "out"
    size = act_block or w.shape[0]
    nodes, total = [], None  # total: the float32 sum of the blocks' rescaled products so far
    for b, start in enumerate(range(0, w.shape[0], size)):
        q = f"{p}b{b}_"
        graph.initializer.append(numpy_helper.from_array(w_int[start:start + size], q + "w"))
        xb = x
        if size < w.shape[0]:
            graph.initializer.extend(numpy_helper.from_array(np.array([v], np.int64), q + k)
                                     for k, v in (("lo", start), ("hi", start + size)))
            nodes.append(op("Slice", [x, q + "lo", q + "hi", "pt_axes"], [q + "x"]))
            xb = q + "x"
        nodes += _quantized_product(q, xb)
        if total is not None:
            nodes.append(op("Add", [total, q + "y"], [q + "sum"]))
        total = q + "y" if total is None else q + "sum"
    nodes.append(op("Mul", [total, p + "ws"], [y]))
    if len(members) > 1:
        sizes = [weights[m.input[1]].dims[1] for m in members]
        graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), p + "sizes"))
        nodes.append(op("Split", [y, p + "sizes"], [m.output[0] for m in members], axis=-1))
    return nodes


def _quantized_product(q: str, x: str) -> list:
    """x's per-row scale s, x rounded to uint8 around 128, MatMulInteger with the int8 weights `q`w, times s."""
    from onnx import TensorProto, helper

    op = helper.make_node
    return [op("Abs", [x], [q + "abs"]), op("ReduceMax", [q + "abs", "pt_axes"], [q + "max"], keepdims=1),
            op("Max", [q + "max", "pt_eps"], [q + "max1"]), op("Div", [q + "max1", "pt_127"], [q + "s"]),
            op("Div", [x, q + "s"], [q + "xs"]), op("Round", [q + "xs"], [q + "xr"]),
            op("Add", [q + "xr", "pt_128"], [q + "xo"]), op("Clip", [q + "xo", "pt_0", "pt_255"], [q + "xc"]),
            op("Cast", [q + "xc"], [q + "xq"], to=TensorProto.UINT8),
            op("MatMulInteger", [q + "xq", q + "w", "pt_zp"], [q + "acc"]),
            op("Cast", [q + "acc"], [q + "accf"], to=TensorProto.FLOAT), op("Mul", [q + "accf", q + "s"], [q + "y"])]


def main() -> None:
    import smoothquant

    export, predictions = ROOT / "models/export", ROOT / "metrics/predictions.jsonl"
    reference = [json.loads(line) for line in predictions.open(encoding="utf-8")]
    scratch = Path(tempfile.mkdtemp(prefix="pertoken-"))
    source = export / "onnx" / "model.onnx"
    smoothed = smoothquant.smoothed_graph(export, scratch / "smoothed", 0.5)
    config = json.loads((export / "config.json").read_text())
    down = config["intermediate_size"]  # down_proj's inner size
    inner_sizes = {config["hidden_size"], config["num_attention_heads"] * config["head_dim"], down}
    # name -> (graph, weight bits, inner sizes kept in float32, fuse the MatMuls of one input, activation blocks)
    graphs = {"per-token int8": (source, 8, (), False, {}), "per-token int8, 7-bit weights": (source, 7, (), False, {}),
              "SmoothQuant 0.5 + per-token int8": (smoothed, 8, (), False, {}),
              "SmoothQuant 0.5 + per-token int8, down_proj in float32": (smoothed, 8, (down,), False, {}),
              "SmoothQuant 0.5 + per-token int8, q/k/v and gate/up fused": (smoothed, 8, (), True, {}),
              "SmoothQuant 0.5 + per-token int8, fused, down_proj in float32": (smoothed, 8, (down,), True, {}),
              "SmoothQuant 0.5 + per-token int8, fused, down_proj's input in blocks of 256":
                  (smoothed, 8, (), True, {down: 256}),
              "SmoothQuant 0.5 + per-token int8, fused, every input in blocks of 128":
                  (smoothed, 8, (), True, {inner: 128 for inner in inner_sizes})}
    common = {"predictions": str(predictions), "n": len(reference), "threads": 2, "dtype": "as-is", "batch": 16}
    variants = [("adapter (4-bit NF4 + LoRA, the previous default)",
                 {"model": str(ROOT / "models/adapter"), "base": str(ROOT / "models/base")}),
                ("export, ONNX Runtime float32 (today's default)", {"model": str(export), "backend": "onnx"})]
    for i, (name, (graph, bits, float_inner, fuse, blocks)) in enumerate(graphs.items()):
        target = scratch / f"graph{i}.onnx"
        count = per_token_int8(graph, target, bits, float_inner, fuse, blocks)
        variants.append((f"{name} ({count} MatMuls)", {"model": str(export), "backend": "onnx", "onnx": str(target)}))
    rows = throughput.score_variants(variants, common, reference)
    throughput.print_table(rows, len(reference))
    shutil.rmtree(scratch)
    (ROOT / "bench/pertoken_int8.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
