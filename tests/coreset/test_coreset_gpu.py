"""Leverage scores and Lewis weights on CUDA against the CPU path (runs only with a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty import coreset
from thrifty.errors import InvalidArgumentError

pytestmark = pytest.mark.gpu


def coherent_matrix(seed: int, n: int, d: int) -> np.ndarray:
    """Heavy-tailed rows and a few rows that carry a direction alone (leverage near 1)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_t(2.0, size=(n, d))
    a[: d // 2] = np.eye(d)[: d // 2] * 50.0
    return a


@pytest.mark.parametrize(("n", "d"), [(7, 7), (300, 5), (5000, 40), (20000, 3)])
def test_row_norms_kernel_equals_numpy(n: int, d: int) -> None:
    cupy = pytest.importorskip("cupy")
    from thrifty.coreset import _gpu

    q = np.random.default_rng(n).standard_normal((n, d))
    for dtype in (np.float64, np.float32):
        got = _gpu.row_sq_norms(cupy.asarray(q.astype(dtype))).get()
        np.testing.assert_allclose(got, (q.astype(dtype) ** 2).sum(axis=1), rtol=1e-5)


@pytest.mark.parametrize(("n", "d"), [(50, 50), (400, 6), (20000, 30)])
def test_leverage_on_cuda_equals_cpu(n: int, d: int) -> None:
    cupy = pytest.importorskip("cupy")
    a = coherent_matrix(d, n, d)
    got = coreset.leverage_scores(cupy.asarray(a))
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(got.get(), coreset.leverage_scores(a), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0, 6.0])
def test_lewis_weights_on_cuda_equal_cpu(p: float) -> None:
    cupy = pytest.importorskip("cupy")
    a = coherent_matrix(int(p * 10), 3000, 12)
    got = coreset.lewis_weights(cupy.asarray(a), p)
    np.testing.assert_allclose(got.get(), coreset.lewis_weights(a, p), rtol=1e-6, atol=1e-12)
    # The weights sum to d at the fixed point; the iterate that passes tol = 1e-6 is within
    # tol / (1 - contraction rate) of it.
    assert float(got.sum()) == pytest.approx(12.0, rel=1e-5)


def test_torch_cuda_tensors_come_back_as_tensors() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    a = coherent_matrix(3, 1000, 8)
    got = coreset.leverage_scores(torch.from_numpy(a).cuda())
    assert isinstance(got, torch.Tensor)
    assert got.is_cuda
    np.testing.assert_allclose(got.cpu().numpy(), coreset.leverage_scores(a), rtol=1e-9)


def test_rank_deficient_matrix_on_cuda_names_the_argument() -> None:
    cupy = pytest.importorskip("cupy")
    a = coherent_matrix(4, 100, 4)
    a[:, 3] = a[:, 0] + a[:, 1]
    with pytest.raises(InvalidArgumentError, match="rank") as info:
        coreset.leverage_scores(cupy.asarray(a))
    assert info.value.argument == "A"
