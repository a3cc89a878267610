"""The device path's algorithm, with NumPy standing in for CuPy, equals the CPU path.

The GPU tests (``test_coreset_gpu.py``) need a device; this one runs everywhere. It swaps
CuPy for NumPy and the row-norm kernel for its definition, so what it checks is the device
path's own logic (column scaling, rank test, iteration, stopping rule, zero rows) against
the Rust path.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

from thrifty import coreset
from thrifty.coreset import _gpu
from thrifty.errors import InvalidArgumentError

scipy_linalg = pytest.importorskip("scipy.linalg")

_NUMPY_AS_CUPY = types.SimpleNamespace(
    asnumpy=np.asarray,
    **{
        name: getattr(np, name)
        for name in (
            "abs", "ascontiguousarray", "diag", "eye", "float64", "full", "isfinite", "sqrt",
            "linalg", "max", "power", "where",
        )
    }
)  # fmt: skip


@pytest.fixture
def numpy_device(monkeypatch: pytest.MonkeyPatch) -> None:
    def require(name: str) -> Any:
        return scipy_linalg if name == "cupyx.scipy.linalg" else _NUMPY_AS_CUPY

    monkeypatch.setattr(_gpu, "require", require)
    monkeypatch.setattr(_gpu, "row_sq_norms", lambda q: (q * q).sum(axis=1))


def coherent_matrix(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_t(2.0, size=(n, d))
    a[: d // 2] = np.eye(d)[: d // 2] * 50.0
    a[d] = 0.0  # a zero row: weight exactly 0 on both paths
    return a


@pytest.mark.usefixtures("numpy_device")
def test_device_leverage_logic_equals_cpu() -> None:
    a = coherent_matrix(0, 2000, 9)
    np.testing.assert_allclose(_gpu.leverage_scores(a), coreset.leverage_scores(a), atol=1e-12)


@pytest.mark.usefixtures("numpy_device")
@pytest.mark.parametrize("p", [1.0, 1.5, 3.0, 4.0, 6.0])
def test_device_lewis_logic_equals_cpu(p: float) -> None:
    a = coherent_matrix(int(p * 4), 1500, 8)
    got = _gpu.lewis_weights(a, p, 1000, 1e-6)
    np.testing.assert_allclose(got, coreset.lewis_weights(a, p), atol=1e-12)
    assert got[8] == 0.0


@pytest.mark.usefixtures("numpy_device")
def test_device_rank_test_matches_cpu() -> None:
    a = coherent_matrix(5, 300, 5)
    a[:, 4] = a[:, 0] - 2 * a[:, 1]
    for path in (_gpu.leverage_scores, coreset.leverage_scores):
        with pytest.raises(InvalidArgumentError, match="rank") as info:
            path(a)
        assert info.value.argument == "A"


@pytest.mark.usefixtures("numpy_device")
def test_ill_conditioned_matrix_takes_householder_and_still_equals_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Columns scaled over 10 decades: cond ~ 1e10 after column normalisation of a
    # near-collinear pair, past what CholeskyQR2 keeps orthogonal.
    rng = np.random.default_rng(7)
    a = rng.standard_normal((800, 4))
    a[:, 3] = a[:, 2] + 1e-9 * rng.standard_normal(800)
    routes: list[str] = []
    householder = _gpu._householder_basis
    monkeypatch.setattr(
        _gpu, "_householder_basis", lambda m: routes.append("householder") or householder(m)
    )
    got = _gpu.leverage_scores(a)
    assert routes == ["householder"]
    np.testing.assert_allclose(got, coreset.leverage_scores(a), atol=1e-8)
    assert got.sum() == pytest.approx(4.0, rel=1e-6)


@pytest.mark.usefixtures("numpy_device")
def test_well_conditioned_matrix_takes_cholesky_qr2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu, "_householder_basis", lambda m: pytest.fail("took Householder"))
    a = coherent_matrix(3, 5000, 12)
    q = _gpu._orthonormal_basis(a)
    np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-13)
    np.testing.assert_allclose(_gpu.leverage_scores(a), coreset.leverage_scores(a), atol=1e-12)


@pytest.mark.usefixtures("numpy_device")
def test_columns_past_the_float64_range_of_their_squares_match_cpu() -> None:
    # Scores do not depend on column scale; sums of squares of 1e200 or 1e-200 do.
    a = coherent_matrix(11, 400, 5)
    scaled = a * np.array([1e200, 1.0, 1e-200, 3.0, 1e-160])
    expected = coreset.leverage_scores(a)
    np.testing.assert_allclose(coreset.leverage_scores(scaled), expected, atol=1e-12)
    with np.errstate(over="ignore"):  # NumPy warns where CuPy would not: the Gram overflows
        np.testing.assert_allclose(_gpu.leverage_scores(scaled), expected, atol=1e-12)
