"""coreset.lewis_weights: the fixed point, its sum, convergence for p >= 4, and errors."""

from __future__ import annotations

import numpy as np
import pytest
from coreset_references import coherent, lewis_residual, qr_leverage
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty import _native, coreset
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError


@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
def test_fixed_point_within_tol_and_sum_d(p: float) -> None:
    a = coherent(3000, 5, seed=1)
    tol = 1e-8
    w = coreset.lewis_weights(a, p, tol=tol)
    # The NumPy map's own rounding adds a little on top of the iteration's residual.
    assert lewis_residual(a, w, p) <= tol * 1.01 + 1e-12
    assert w.sum() == pytest.approx(a.shape[1], rel=10 * tol)
    assert w.min() > 0
    assert w.max() <= 1.0 + 1e-9


def test_p2_lewis_weights_are_leverage_scores() -> None:
    a = coherent(1000, 4, seed=2)
    np.testing.assert_allclose(coreset.lewis_weights(a, 2.0), qr_leverage(a), atol=1e-12)


@pytest.mark.parametrize("p", [4.0, 6.0])
def test_damped_iteration_converges_linearly_for_large_p(p: float) -> None:
    a = coherent(2000, 6, seed=3)
    found = _native.coreset_lewis_weights(a, p, tol=1e-10)
    assert found.residual <= 1e-10
    # Rate 1 - 2/p near the fixed point: a few dozen iterations, not hundreds.
    assert found.iterations < 200


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 5),
    extra=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    p=st.sampled_from([1.0, 1.5, 3.0, 4.0]),
)
def test_fixed_point_on_random_shapes(d: int, extra: int, seed: int, p: float) -> None:
    a = np.random.default_rng(seed).standard_normal((d + extra, d))
    w = coreset.lewis_weights(a, p, tol=1e-9)
    assert lewis_residual(a, w, p) <= 1e-9 * 1.01 + 1e-12
    assert w.sum() == pytest.approx(d, rel=1e-7)


def test_lewis_weights_are_invariant_to_column_scaling_and_row_order() -> None:
    a = coherent(500, 3, seed=4)
    w = coreset.lewis_weights(a, 1.0, tol=1e-10)
    scaled = a * np.array([1e-3, 1.0, 1e3])
    np.testing.assert_allclose(coreset.lewis_weights(scaled, 1.0, tol=1e-10), w, rtol=1e-7)
    order = np.random.default_rng(0).permutation(500)
    np.testing.assert_allclose(coreset.lewis_weights(a[order], 1.0, tol=1e-10), w[order], rtol=1e-7)


def test_bad_arguments_are_named() -> None:
    a = coherent(100, 3, seed=0)
    for p in (0.0, -2.0, float("nan")):
        with pytest.raises(InvalidArgumentError) as info:
            coreset.lewis_weights(a, p)
        assert info.value.argument == "p"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.lewis_weights(a, 1.0, iters=2, tol=1e-12)
    assert info.value.argument == "iters"
    assert "did not reach" in str(info.value)
    for tol in (0.0, -1.0, float("nan"), "1e-6", None):  # a string once escaped as ValueError
        with pytest.raises(InvalidArgumentError) as info:
            coreset.lewis_weights(a, 1.0, tol=tol)
        assert info.value.argument == "tol"
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteError) as info:
        coreset.lewis_weights(bad, 1.0)
    assert info.value.argument == "A"
    with pytest.raises(ShapeError) as info:
        coreset.lewis_weights(a[:2], 1.0)
    assert info.value.argument == "A"
    deficient = np.column_stack([a[:, 0], a[:, 0], a[:, 1]])
    with pytest.raises(InvalidArgumentError) as info:
        coreset.lewis_weights(deficient, 1.0)
    assert info.value.argument == "A"
