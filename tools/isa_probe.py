"""Which CPU math changes bytes under which instruction-set cap (docs/reproducibility.md's table).

Prints ATen's capability, a short hash of a few ops' outputs (a matmul through MKL, a softmax through ATen, an
exact gelu through oneDNN, the tanh gelu Gemma uses, the two matmul shapes of a backward pass; the three products
again through oneDNN, as runtime.cpu_matmul: onednn computes them) and of a tiny model's LoRA adapter after 10
seeded steps with each runtime.cpu_matmul. Run it under each cap and compare:

    for e in "" ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 MKL_CBWR=COMPATIBLE \
             "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=COMPATIBLE" ATEN_CPU_CAPABILITY=default; do
        echo "$e: $(env $e OMP_NUM_THREADS=1 python tools/isa_probe.py)"; done
"""

import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def short(tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:8]


def main() -> None:
    import torch

    torch.manual_seed(0)
    a, b, c = torch.randn(240, 640), torch.randn(640, 2048), torch.randn(240, 2048)
    gelu = torch.nn.functional.gelu
    ops = {"matmul": a @ b, "softmax": torch.softmax(c, -1), "gelu": gelu(c), "gelu_tanh": gelu(c, approximate="tanh")}
    # the shapes a backward pass adds: a LoRA weight's gradient (the token dimension, 1,024, is the sum: MKL
    # blocks it by cache size) and an input's gradient through a frozen weight
    g, x, w = torch.randn(1024, 16), torch.randn(1024, 640), torch.randn(640, 2048)
    gx = torch.randn(1024, 2048)
    ops.update(grad_w=g.t() @ x, grad_x=gx @ w.t())
    from qlora_sentiment.core.cpu_matmul import cpu_matmul

    with cpu_matmul("onednn"):
        ops.update(dnn_matmul=a @ b, dnn_grad_w=g.t() @ x, dnn_grad_x=gx @ w.t())
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import build_tiny_llama, train_tiny

    tmp = Path(tempfile.mkdtemp())
    model = build_tiny_llama(tmp / "model")
    adapters = {}
    for matmul in ("mkl", "onednn"):
        (tmp / matmul).mkdir()
        _, _, result = train_tiny(tmp / matmul, model, **{"train.max_steps": 10, "runtime.cpu_isa": "native",
                                                          "runtime.cpu_matmul": matmul})
        digest = hashlib.sha256((tmp / matmul / "adapter/adapter_model.safetensors").read_bytes()).hexdigest()[:8]
        adapters[matmul] = f"{digest} loss={result.record.train_loss!r}"
    print(torch.backends.cpu.get_cpu_capability(), " ".join(f"{k}={short(v)}" for k, v in ops.items()),
          f"adapter={adapters['mkl']} dnn_adapter={adapters['onednn']}")


if __name__ == "__main__":
    main()
