"""coreset.kmeans: weighted k-means cost on the coreset against the full cost."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty import coreset
from thrifty.errors import InvalidArgumentError, ShapeError


def _blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-20, 20, size=(6, 2))
    points = centers[rng.integers(0, 6, size=n)] + rng.standard_normal((n, 2))
    points[:5] += 300.0
    return points


def _center_sets(points: np.ndarray, k: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(99)
    sets = [points[rng.choice(len(points), size=k, replace=False)] for _ in range(count)]
    sets.append(points[:k])  # one set sitting on the far-away points
    return sets


def test_cost_error_small_and_smaller_than_uniform() -> None:
    points = _blobs(20_000, seed=0)
    k, m = 6, 1000
    ours, uniform = [], []
    for seed in range(5):
        c = coreset.kmeans(points, k, m, seed=seed)
        assert len(c) == m
        assert c.p == 2.0
        assert c.method == "kmeans"
        rng = np.random.default_rng(seed)
        u = coreset.Coreset(rng.integers(0, len(points), size=m), np.full(m, len(points) / m))
        for centers in _center_sets(points, k, 10):
            full = coreset.kmeans_cost(points, centers)
            ours.append(abs(coreset.kmeans_cost(points, centers, coreset=c) / full - 1))
            uniform.append(abs(coreset.kmeans_cost(points, centers, coreset=u) / full - 1))
    # Measured: median 0.06 and worst 0.30 for ours, 0.34 and 0.70 for uniform.
    assert np.median(ours) < 0.12
    assert max(ours) < 0.5
    assert np.median(ours) < 0.5 * np.median(uniform)
    assert max(ours) < max(uniform)


def test_weights_and_determinism() -> None:
    points = _blobs(2000, seed=1)
    c = coreset.kmeans(points, 4, 300, seed=7)
    again = coreset.kmeans(points, 4, 300, seed=7)
    np.testing.assert_array_equal(c.indices, again.indices)
    scores = coreset.kmeans_sensitivities(points, 4, seed=7)
    np.testing.assert_allclose(c.weights, scores.sum() / (300 * scores[c.indices]), rtol=1e-12)
    # The estimate of the cost of any centers is unbiased: over seeds, its mean is within four
    # standard errors of the full cost (a 1.6-sigma miss at 40 seeds is what 5 % allowed).
    centers = points[[10, 20, 30, 40]]
    full = coreset.kmeans_cost(points, centers)
    estimates = np.array(
        [
            coreset.kmeans_cost(points, centers, coreset=coreset.kmeans(points, 4, 300, seed=s))
            for s in range(200)
        ]
    )
    standard_error = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean() - full) < 4 * standard_error
    assert standard_error < 0.03 * full  # so that the check above has teeth


def test_kmeans_cost_definition_and_errors() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    centers = np.array([[0.0, 0.0], [5.0, 4.0]])
    assert coreset.kmeans_cost(points, centers) == pytest.approx(2.0)
    c = coreset.Coreset(np.array([1, 2]), np.array([3.0, 0.5]))
    assert coreset.kmeans_cost(points, centers, coreset=c) == pytest.approx(3.5)
    with pytest.raises(ShapeError) as info:
        coreset.kmeans_cost(points, np.zeros((2, 3)))
    assert info.value.argument == "centers"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.kmeans(points, 2, 0)
    assert info.value.argument == "m"
    with pytest.raises(InvalidArgumentError) as info:
        coreset.kmeans(points, 4, 10)
    assert info.value.argument == "k"
