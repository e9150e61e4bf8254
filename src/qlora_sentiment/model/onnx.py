"""ONNX Runtime: the CPU inference path of `predict` and `serve` for a merged export (issue 25).

The export stage writes `onnx/model.onnx` (graph) + `onnx/model.onnx.data` (weights) beside model.safetensors,
made with `torch.onnx.export(dynamo=True)` (optimum-onnx does not support transformers 5), for float32 sequence
classifiers: ONNX Runtime's CPU kernels run them ~2× faster than eager PyTorch at the same float32 arithmetic
(BENCHMARKS.md). `OnnxClassifier` stands in for the torch model inside LabelScorer (same inputs, same logits), so
the scoring code (padding, batching, softmax) stays the one the evaluate stage runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from qlora_sentiment.core.errors import ModelError

log = logging.getLogger(__name__)

ONNX_FILE = Path("onnx") / "model.onnx"
BACKENDS = ("auto", "onnx", "torch")  # what runs an export: see model/export.py's export_backend
# The largest |logit| difference the export may show against the torch model on its check batch: float32 kernels
# that sum in another order differ by ~1e-5 here; a wrong graph (a shape specialised at trace time) by far more.
TOLERANCE = 1e-3


def wants_onnx(auto_class: str, dtype: str) -> bool:
    """A float32 sequence classifier gets an ONNX copy (the CPU default). A bf16 export (the GPU presets) does not:
    ONNX Runtime's CPU kernels have no bf16 GEMM, and a 7B graph doubles a 15 GB folder."""
    return auto_class == "AutoModelForSequenceClassification" and dtype == "float32"


def _logits_module(model):
    """The torch module torch.onnx traces: ids and mask in, the classifier's logits out (torch is imported here,
    not at module level: the CLI imports this module for BACKENDS)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    return Logits().eval()


def padded_batch(tokenizer, lengths: list[int]):
    """Rows of the given lengths, right-padded as LabelScorer pads them."""
    from qlora_sentiment.model.scoring import _pad

    ids = tokenizer("a", add_special_tokens=False)["input_ids"][:1] or [tokenizer.pad_token_id]
    return _pad([ids * max(1, n) for n in lengths], tokenizer.pad_token_id, left=False)


def write_onnx(folder: Path, max_length: int) -> Path:
    """folder/onnx/model.onnx from the export's saved weights, made in a child process with PYTHONHASHSEED=0:
    transformers builds Gemma 3's rotary tables in set order, and the traced graph's wiring follows the string hash
    seed, so without a fixed seed the same export gives another model.onnx each run (and another dvc.lock)."""
    done = subprocess.run([sys.executable, "-m", __name__, str(folder), str(max_length)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise ModelError(lines[-1].removeprefix("ModelError: ") if lines else f"ONNX export: exit {done.returncode}")
    path = Path(folder) / ONNX_FILE
    log.info("export: %s written (%s)", ONNX_FILE, done.stdout.strip())
    return path


def _strip_trace_metadata(path: Path) -> None:
    """torch.onnx records each node's Python stack trace (absolute paths of this checkout and its venv) and module
    path in the node's metadata: the same export in another folder would be other bytes. The graph keeps only what
    runs; the weights file is not touched (loaded without its external data, saved back as references)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graphs = [model.graph, *model.functions]  # functions and subgraphs (If/Loop bodies) hold nodes too
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else [])
                graphs.extend(attribute.graphs)
    onnx.save(model, str(path))


def _export(folder: Path, max_length: int) -> str:
    """Export the saved float32 classifier with batch and sequence dynamic, then check ONNX Runtime's logits
    against the model's on a batch of other shapes; a mismatch is a ModelError."""
    import warnings

    import torch
    import transformers

    for name in ("onnx_ir", "onnxscript", "torch.onnx"):  # pass-by-pass INFO lines, and "no torchvision" warnings
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.export's own deprecations (LeafSpec)
    warnings.filterwarnings("ignore", message="# The axis name")  # batch/sequence named once, used by both inputs
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    wrapped = _logits_module(model)
    ids, mask = padded_batch(tokenizer, [max(2, max_length // 3), max(3, max_length // 2)])
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(wrapped, (ids, mask), dynamo=True, verbose=False, optimize=True,
                                input_names=["input_ids", "attention_mask"], output_names=["logits"],
                                dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                                "attention_mask": {0: batch, 1: sequence}})
    path = folder / ONNX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=True)
    _strip_trace_metadata(path)
    # checked on a batch of another size, lengths and padding than the trace's: a graph that specialised on the
    # trace's shapes (or on the sliding window not being reached at max_length) shows here
    ids, mask = padded_batch(tokenizer, [max_length, 1, max(1, max_length - 7)])
    with torch.inference_mode():
        expected = wrapped(ids, mask)
    diff = (OnnxClassifier(path, threads=None)(ids, mask).logits - expected).abs().max().item()
    if diff > TOLERANCE:
        raise ModelError(f"{path}: ONNX Runtime's logits differ from the model's by {diff:.2g} (> {TOLERANCE}); "
                         "the ONNX export is wrong for this architecture: report it, and predict with "
                         "--backend torch meanwhile")
    return f"ONNX Runtime matches the model within {diff:.1g}"


class OnnxClassifier:
    """An ONNX Runtime session that LabelScorer drives like the torch classifier: `model(input_ids=…,
    attention_mask=…).logits` (a float32 CPU tensor), `.eval()`, `.parameters()`."""

    def __init__(self, path: Path, threads: int | None):
        import onnxruntime

        # a missing file is export_backend's one-line error before this point (ONNX Runtime's own otherwise)
        options = onnxruntime.SessionOptions()
        if threads:  # None: ONNX Runtime's own choice (one thread per physical core)
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings about unused initializers are not ours to fix
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids, attention_mask, **_):
        import torch

        logits = self.session.run(["logits"], {"input_ids": input_ids.cpu().numpy(),
                                               "attention_mask": attention_mask.cpu().numpy()})[0]
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def eval(self):
        return self

    def parameters(self):
        """What LabelScorer probes for dtype and device: float32 on the CPU."""
        import torch

        yield torch.zeros(0)


if __name__ == "__main__":  # write_onnx's child: python -m qlora_sentiment.model.onnx FOLDER MAX_LENGTH
    from qlora_sentiment.core.runtime import program_gc

    program_gc()
    try:
        print(_export(Path(sys.argv[1]), int(sys.argv[2])))
    except ModelError as exc:
        sys.exit(f"ModelError: {exc}")
