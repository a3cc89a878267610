"""coreset.lp_regression (IRLS / QR in Rust) and coreset.regression on sampled rows."""

from __future__ import annotations

import numpy as np
import pytest
from coreset_references import l1_regression_cost
from scipy.optimize import minimize

from thrifty import coreset
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError


def _problem(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) * (1.0 + rng.pareto(2.0, size=(n, 1)))
    a[:5, -1] *= 50.0
    b = a @ np.arange(1.0, d + 1) + rng.standard_t(2, size=n)
    return a, b


def _cost(a: np.ndarray, b: np.ndarray, x: np.ndarray, p: float) -> float:
    return float(np.sum(np.abs(a @ x - b) ** p))


def test_p2_is_least_squares() -> None:
    a, b = _problem(500, 4, seed=0)
    x = coreset.lp_regression(a, b, 2.0)
    np.testing.assert_allclose(x, np.linalg.lstsq(a, b, rcond=None)[0], rtol=1e-10)
    w = np.random.default_rng(1).uniform(0.1, 3.0, size=500)
    xw = coreset.lp_regression(a, b, 2.0, weights=w)
    expected = np.linalg.lstsq(a * np.sqrt(w)[:, None], b * np.sqrt(w), rcond=None)[0]
    np.testing.assert_allclose(xw, expected, rtol=1e-10)


def test_p1_reaches_the_linear_program_optimum() -> None:
    a, b = _problem(300, 3, seed=1)
    x = coreset.lp_regression(a, b, 1.0, iters=500)
    assert _cost(a, b, x, 1.0) <= l1_regression_cost(a, b) * (1 + 1e-5)


@pytest.mark.parametrize("p", [1.5, 3.0, 4.0])
def test_general_p_matches_a_generic_optimiser(p: float) -> None:
    a, b = _problem(400, 3, seed=2)
    x = coreset.lp_regression(a, b, p)
    start = np.linalg.lstsq(a, b, rcond=None)[0]
    reference = minimize(
        lambda z: _cost(a, b, z, p),
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
    )
    assert _cost(a, b, x, p) <= reference.fun * (1 + 1e-6)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_sampled_regression_cost_within_documented_eps(p: float) -> None:
    a, b = _problem(20_000, 4, seed=3)
    full = _cost(a, b, coreset.lp_regression(a, b, p, iters=300), p)
    m = 50 * (a.shape[1] + 1)
    for seed in range(4):
        x, c = coreset.regression(a, b, p, m, seed=seed)
        assert len(c) == m
        assert c.method == "lewis"
        assert c.p == p
        assert _cost(a, b, x, p) <= 1.05 * full


def test_sampled_regression_beats_uniform_at_p3() -> None:
    a, b = _problem(20_000, 4, seed=4)
    full = _cost(a, b, coreset.lp_regression(a, b, 3.0), 3.0)
    lewis, uniform = [], []
    for seed in range(6):
        x, _ = coreset.regression(a, b, 3.0, 200, seed=seed)
        lewis.append(_cost(a, b, x, 3.0) / full - 1)
        x, _ = coreset.regression(a, b, 3.0, 200, seed=seed, method="uniform")
        uniform.append(_cost(a, b, x, 3.0) / full - 1)
    assert np.median(lewis) < np.median(uniform)


def test_bad_arguments_are_named() -> None:
    a, b = _problem(100, 3, seed=0)
    with pytest.raises(InvalidArgumentError) as info:
        coreset.regression(a, b, 0.5, 50)
    assert info.value.argument == "p"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.lp_regression(a, b, 0.5)
    assert info.value.argument == "p"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.regression(a, b, 1.0, 0)
    assert info.value.argument == "m"
    with pytest.raises(ShapeError) as info:
        coreset.regression(a, b[:-1], 1.0, 50)
    assert info.value.argument == "b"
    bad = b.copy()
    bad[2] = np.inf
    with pytest.raises(NonFiniteError) as info:
        coreset.lp_regression(a, bad, 1.0)
    assert info.value.argument == "b"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.lp_regression(a, b, 1.0, weights=-np.ones(100))
    assert info.value.argument == "weights"
    # b in the span of a: [a b] is rank-deficient, and the error says so about b.
    with pytest.raises(InvalidArgumentError) as info:
        coreset.regression(a, a @ np.ones(3), 1.0, 50)
    assert info.value.argument == "b"
    deficient = np.column_stack([a[:, 0], a[:, 0]])
    with pytest.raises(InvalidArgumentError) as info:
        coreset.regression(deficient, b, 1.0, 50)
    assert info.value.argument == "A"
