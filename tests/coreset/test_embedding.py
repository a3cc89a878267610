"""coreset.subspace_embedding and Coreset: score sampling beats uniform on coherent data."""

from __future__ import annotations

import numpy as np
import pytest
from coreset_references import coherent

from thrifty import coreset
from thrifty.errors import InvalidArgumentError, ShapeError

SEEDS = range(8)


def _directions(d: int) -> np.ndarray:
    rng = np.random.default_rng(1234)
    xs = rng.standard_normal((d, 300))
    # Directions that lean on the rare last column, where uniform sampling is blind.
    xs[-1, :100] *= 1e3
    return np.column_stack([np.eye(d), xs])


def _median_distortion(a: np.ndarray, p: float, m: int, method: str) -> float:
    xs = _directions(a.shape[1])
    return float(
        np.median(
            [
                coreset.subspace_embedding(a, p, m, method=method, seed=s).distortion(a, xs)  # type: ignore[arg-type]
                for s in SEEDS
            ]
        )
    )


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_lewis_beats_uniform(p: float) -> None:
    a = coherent(4000, 6, seed=7)
    m = 200
    lewis = _median_distortion(a, p, m, "lewis")
    uniform = _median_distortion(a, p, m, "uniform")
    assert lewis < 0.5 * uniform
    assert lewis < 0.5


def test_root_leverage_beats_uniform_for_p1() -> None:
    a = coherent(4000, 6, seed=8)
    root = _median_distortion(a, 1.0, 200, "root_leverage")
    uniform = _median_distortion(a, 1.0, 200, "uniform")
    assert root < 0.5 * uniform


@pytest.mark.parametrize("method", ["leverage", "sensitivity"])
def test_distortion_shrinks_with_m(method: str) -> None:
    a = coherent(2000, 4, seed=9)
    small = _median_distortion(a, 1.0, 100, method)
    large = _median_distortion(a, 1.0, 2000, method)
    assert large < small


def test_coreset_fields_and_determinism() -> None:
    a = coherent(1000, 3, seed=1)
    c = coreset.subspace_embedding(a, 1.5, 100, seed=3)
    assert c.indices.dtype == np.int64
    assert c.weights.dtype == np.float64
    assert c.indices.shape == c.weights.shape == (100,)
    assert c.p == 1.5
    assert c.method == "lewis"
    assert "m=100" in repr(c)
    assert "lewis" in repr(c)
    again = coreset.subspace_embedding(a, 1.5, 100, seed=3)
    np.testing.assert_array_equal(c.indices, again.indices)
    np.testing.assert_array_equal(c.weights, again.weights)
    # Weights 1 / (m p_i) for draws with replacement by Lewis weights.
    w = coreset.lewis_weights(a, 1.5)
    np.testing.assert_allclose(c.weights, w.sum() / (100 * w[c.indices]), rtol=1e-12)
    without = coreset.subspace_embedding(a, 1.5, 100, seed=3, replace=False)
    assert np.unique(without.indices).size == 100


def test_distortion_definition() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    c = coreset.Coreset(np.array([0, 1]), np.array([2.0, 1.0]), p=1.0, method="uniform")
    # x = e1: full 2, coreset 2; x = e2: full 2, coreset 1; x = e1 + e2: full 4, coreset 3.
    assert c.distortion(a, np.eye(2)) == pytest.approx(0.5)
    assert c.distortion(a, np.array([1.0, 1.0])) == pytest.approx(0.25)
    np.testing.assert_allclose(c.norms(a, np.eye(2)), [2.0, 1.0])
    with pytest.raises(ShapeError) as info:
        c.distortion(a, np.ones(3))
    assert info.value.argument == "xs"
    with pytest.raises(ShapeError) as info:
        coreset.Coreset(np.array([0, 1]), np.array([1.0]))
    assert info.value.argument == "weights"


def test_bad_arguments_are_named() -> None:
    a = coherent(200, 3, seed=0)
    for m in (0, -5, 2.5):
        with pytest.raises(InvalidArgumentError) as info:
            coreset.subspace_embedding(a, 1.0, m)  # type: ignore[arg-type]
        assert info.value.argument == "m"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.subspace_embedding(a, 0.0, 10)
    assert info.value.argument == "p"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.subspace_embedding(a, 1.0, 10, method="magic")  # type: ignore[arg-type]
    assert info.value.argument == "method"
    with pytest.raises(ShapeError) as info:
        coreset.subspace_embedding(a[:2], 1.0, 10)
    assert info.value.argument == "A"
