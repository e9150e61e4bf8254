"""runtime.cpu_matmul (core/cpu_matmul.py): training's float32 products in oneDNN, torch's own kernels outside."""

import hashlib

import pytest
import torch

from qlora_sentiment.core.cpu_matmul import cpu_matmul


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()


def onednn(a, w, bias=None):
    return torch.ops.mkldnn._linear_pointwise.default(a, w, bias, "none", [], "")


def test_products_go_to_onednn_inside_and_back_to_torch_after():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(328, 640, generator=g), torch.randn(2048, 640, generator=g), torch.randn(2048, generator=g)
    before = torch.nn.functional.linear(x, w, b)
    with cpu_matmul("onednn"):
        inside = torch.nn.functional.linear(x, w, b)  # aten::addmm
        product = x @ w.t()                             # aten::mm
    after = torch.nn.functional.linear(x, w, b)
    assert digest(inside) == digest(onednn(x, w, b))
    assert digest(product) == digest(onednn(x, w))
    # the two libraries round differently on this product (why the choice is a param): the route is real
    assert digest(inside) != digest(before)
    assert digest(after) == digest(before)
    torch.testing.assert_close(inside, before, rtol=1e-5, atol=1e-3)


def test_backward_and_other_cases_keep_their_meaning():
    g = torch.Generator().manual_seed(1)
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(4, 7, 64, generator=g, requires_grad=True)
    reference = [t.detach().clone() for t in torch.autograd.grad(layer(x).square().sum(), (x, layer.weight))]
    with cpu_matmul("onednn"):
        grads = torch.autograd.grad(layer(x).square().sum(), (x, layer.weight))  # backward products below autograd
        doubles = torch.randn(3, 5, dtype=torch.float64, generator=g) @ torch.ones(5, 2, dtype=torch.float64)
        scaled = torch.addmm(torch.ones(3, 2), torch.ones(3, 4), torch.ones(4, 2), beta=0.5, alpha=2.0)
        empty = torch.zeros(0, 4) @ torch.ones(4, 2)
    for got, want in zip(grads, reference):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert doubles.dtype == torch.float64 and doubles.shape == (3, 2)
    assert torch.equal(scaled, torch.full((3, 2), 8.5))  # 0.5 * 1 + 2 * 4
    assert empty.shape == (0, 2)


def test_mkl_changes_nothing_and_a_typo_is_refused():
    x = torch.randn(8, 16)
    with cpu_matmul("mkl"):
        inside = x @ x.t()
    assert torch.equal(inside, x @ x.t())
    with pytest.raises(ValueError, match="cpu_matmul: 'blas' is not one of onednn, mkl"):
        with cpu_matmul("blas"):
            pass
