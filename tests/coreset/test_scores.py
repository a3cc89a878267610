"""coreset.leverage_scores, root_leverage_scores, lp_sensitivities, kmeans_sensitivities."""

from __future__ import annotations

import hashlib
import multiprocessing

import numpy as np
import pytest
import torch
from coreset_references import coherent, exact_l1_sensitivity, qr_leverage
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty import _native, coreset
from thrifty.errors import DTypeError, InvalidArgumentError, NonFiniteError, ShapeError


@settings(max_examples=60, deadline=None)
@given(
    d=st.integers(1, 7),
    extra=st.integers(0, 60),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-3, 1e3),
)
def test_leverage_matches_numpy_qr(d: int, extra: int, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d + extra, d)) * scale
    a[:, 0] *= 1e4  # column scale must not matter
    ours = coreset.leverage_scores(a)
    assert ours.shape == (d + extra,)
    np.testing.assert_allclose(ours, qr_leverage(a), atol=1e-9)
    assert ours.sum() == pytest.approx(d, rel=1e-9)
    assert ours.min() >= 0.0
    assert ours.max() <= 1.0


def test_leverage_across_blocks_of_the_tall_qr() -> None:
    # More rows than one TSQR block, so the stacked-R path is the one checked.
    a = coherent(20_000, 6, seed=3)
    np.testing.assert_allclose(coreset.leverage_scores(a), qr_leverage(a), atol=1e-9)


def test_float32_and_torch_inputs_give_the_float64_result() -> None:
    a = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
    expected = coreset.leverage_scores(a.astype(np.float64))
    np.testing.assert_array_equal(coreset.leverage_scores(a), expected)
    np.testing.assert_array_equal(coreset.leverage_scores(torch.from_numpy(a)), expected)
    np.testing.assert_array_equal(
        coreset.leverage_scores(np.asfortranarray(a.astype(np.float64))), expected
    )


def test_root_leverage_is_the_square_root() -> None:
    a = coherent(500, 4, seed=0)
    np.testing.assert_allclose(
        coreset.root_leverage_scores(a), np.sqrt(coreset.leverage_scores(a)), rtol=1e-15
    )


def test_sketch_within_documented_accuracy_and_seeded() -> None:
    a = coherent(20_000, 60, seed=5)
    exact = qr_leverage(a)
    eps = 0.5
    sketch = coreset.leverage_scores(a, method="sketch", seed=7, eps=eps)
    ratio = sketch / exact
    assert ratio.min() >= 0.44 * (1 - eps)
    assert ratio.max() <= 4 * (1 + eps)
    # The embedding is much better than its worst-case guarantee on average.
    assert abs(np.median(ratio) - 1.0) < 0.25
    again = coreset.leverage_scores(a, method="sketch", seed=7, eps=eps)
    np.testing.assert_array_equal(sketch, again)
    other = coreset.leverage_scores(a, method="sketch", seed=8, eps=eps)
    assert not np.array_equal(sketch, other)


def test_sketch_with_the_jl_step() -> None:
    # d above k = 8 ln(200 n) / eps^2 for eps = 0.9, so the Gaussian step runs.
    a = np.random.default_rng(2).standard_normal((3000, 150))
    exact = qr_leverage(a)
    ratio = coreset.leverage_scores(a, method="sketch", seed=1, eps=0.9) / exact
    assert ratio.min() >= 0.44 * 0.1
    assert ratio.max() <= 4 * 1.9
    assert abs(np.median(ratio) - 1.0) < 0.3


@pytest.mark.parametrize(
    ("a", "error", "argument"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]), NonFiniteError, "A"),
        (np.array([[1.0, np.inf], [0.0, 1.0], [1.0, 1.0]]), NonFiniteError, "A"),
        (np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]), InvalidArgumentError, "A"),
        (np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]), InvalidArgumentError, "A"),
        (np.ones((2, 3)), ShapeError, "A"),
        (np.ones(3), ShapeError, "A"),
        (np.ones((2, 2, 2)), ShapeError, "A"),
        (np.ones((3, 2), dtype=np.int64), DTypeError, "A"),
    ],
)
def test_bad_matrices_name_the_argument(
    a: np.ndarray, error: type[Exception], argument: str
) -> None:
    for function in (coreset.leverage_scores, coreset.root_leverage_scores):
        with pytest.raises(error) as info:
            function(a)
        assert info.value.argument == argument  # type: ignore[attr-defined]


def test_rank_deficiency_message_and_bad_method() -> None:
    a = np.random.default_rng(0).standard_normal((40, 3))
    a[:, 2] = a[:, 0] - 2 * a[:, 1]
    with pytest.raises(InvalidArgumentError, match="rank"):
        coreset.leverage_scores(a)
    with pytest.raises(InvalidArgumentError) as info:
        coreset.leverage_scores(np.eye(3), method="svd")  # type: ignore[arg-type]
    assert info.value.argument == "method"


@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
def test_lp_sensitivity_bounds_bound_random_directions(p: float) -> None:
    a = coherent(400, 4, seed=11)
    bounds = coreset.lp_sensitivities(a, p)
    d = a.shape[1]
    assert bounds.max() <= 1.0
    total_limit = d if p <= 2 else d ** (p / 2)
    assert bounds.sum() <= total_limit * (1 + 1e-6)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((d, 2000))
    xs[:, :d] = np.eye(d)
    y = np.abs(a @ xs) ** p
    shares = y / y.sum(axis=0)
    assert np.all(shares <= bounds[:, None] * (1 + 1e-9))


def test_l1_sensitivity_bounds_against_the_exact_lp() -> None:
    a = coherent(40, 3, seed=2)
    bounds = coreset.lp_sensitivities(a, 1.0)
    exact = np.array([exact_l1_sensitivity(a, i) for i in range(a.shape[0])])
    assert np.all(exact <= bounds * (1 + 1e-7))
    # The bound is informative: the rows carrying the rare direction are the top ones in both.
    assert set(np.argsort(exact)[-3:]) == set(np.argsort(bounds)[-3:])
    assert exact.sum() <= bounds.sum() <= a.shape[1] * (1 + 1e-6)


def test_sensitivities_reject_bad_p() -> None:
    for p in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgumentError) as info:
            coreset.lp_sensitivities(np.eye(3), p)
        assert info.value.argument == "p"


def _blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-20, 20, size=(5, 3))
    labels = rng.integers(0, 5, size=n)
    points = centers[labels] + rng.standard_normal((n, 3))
    points[:4] += 200.0  # a far-away handful that uniform sampling would miss
    return points


def test_kmeans_sensitivities_follow_the_formula() -> None:
    points = _blobs(3000, seed=0)
    k = 5
    found = _native.coreset_kmeans_sensitivities(points, k, seed=4)
    scores, seeds, assignment = found.sensitivities, found.seeds, found.assignment
    assert len(set(seeds.tolist())) == k
    dist = ((points[:, None, :] - points[seeds][None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(assignment, dist.argmin(axis=1))
    nearest = dist.min(axis=1)
    n = points.shape[0]
    c = nearest.mean()
    alpha = 16 * (np.log2(k) + 2)
    size = np.bincount(assignment, minlength=k)[assignment]
    cluster_cost = np.bincount(assignment, weights=nearest, minlength=k)[assignment]
    expected = alpha * nearest / c + 2 * alpha * cluster_cost / (size * c) + 4 * n / size
    np.testing.assert_allclose(scores, expected, rtol=1e-10)
    np.testing.assert_array_equal(coreset.kmeans_sensitivities(points, k, seed=4), scores)
    assert scores.sum() == pytest.approx(n * (3 * alpha + 4 * k), rel=1e-9)


def test_kmeans_sensitivities_bound_the_cost_share_of_random_centers() -> None:
    points = _blobs(2000, seed=1)
    k = 5
    scores = coreset.kmeans_sensitivities(points, k, seed=0)
    rng = np.random.default_rng(3)
    n = points.shape[0]
    for _ in range(50):
        centers = points[rng.choice(n, size=k, replace=False)] + rng.standard_normal((k, 3))
        cost = ((points[:, None, :] - centers[None]) ** 2).sum(axis=2).min(axis=1)
        assert np.all(n * cost / cost.sum() <= scores)


def test_kmeans_sensitivities_bad_input() -> None:
    points = _blobs(100, seed=0)
    for k in (0, 101, -1):
        with pytest.raises(InvalidArgumentError) as info:
            coreset.kmeans_sensitivities(points, k)
        assert info.value.argument == "k"
    bad = points.copy()
    bad[3, 1] = np.nan
    with pytest.raises(NonFiniteError) as info:
        coreset.kmeans_sensitivities(bad, 3)
    assert info.value.argument == "X"
    with pytest.raises(ShapeError) as info:
        coreset.kmeans_sensitivities(points[:, 0], 3)
    assert info.value.argument == "X"


def _score_digest() -> str:
    """A digest of every parallel score on one matrix (small enough for a queue's pipe)."""
    a = coherent(20_000, 5, seed=6)
    parts = [
        coreset.leverage_scores(a),
        coreset.lewis_weights(a, 1.0),
        coreset.leverage_scores(a, method="sketch", seed=1),
        coreset.kmeans_sensitivities(a, 4, seed=2),
    ]
    return hashlib.sha256(b"".join(part.tobytes() for part in parts)).hexdigest()


def _child_scores(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(_score_digest())


@pytest.mark.timeout(120)
def test_forked_child_computes_the_same_scores_without_hanging() -> None:
    expected = _score_digest()  # starts the parent's pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_scores, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert not child.is_alive(), "the forked child hung in the Rust thread pool"
    assert child.exitcode == 0
    assert queue.get(timeout=5) == expected
