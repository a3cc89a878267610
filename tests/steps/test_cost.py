"""The cost matrix against a naive NumPy reference that stores every state."""

from __future__ import annotations

import numpy as np
import pytest

import thrifty
from thrifty import steps

FLOW = steps.GaussianMixtureFlow.ring(modes=4, radius=2.0, std=0.3)


def naive_cost(velocity, grid, noise, metric="l2"):  # type: ignore[no-untyped-def]
    states = [noise.astype(np.float64)]
    velocities = []
    for i in range(len(grid) - 1):
        v = velocity(states[-1], np.full(len(noise), grid[i]))
        velocities.append(v)
        states.append(states[-1] + (grid[i + 1] - grid[i]) * v)
    n = len(grid) - 1
    cost = np.zeros((n + 1, n + 1))
    for i in range(n):
        for j in range(i + 1, n + 1):
            r = (states[i] + (grid[j] - grid[i]) * velocities[i] - states[j]).reshape(
                len(noise), -1
            )
            per = np.linalg.norm(r, axis=1) if metric == "l2" else np.abs(r).sum(axis=1)
            cost[i, j] = per.mean()
    return cost


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_matches_naive_reference(metric: str) -> None:
    noise = np.random.default_rng(0).standard_normal((37, 2))
    grid = steps.time_grid(12, "edm")
    ours = steps.cost_matrix(
        FLOW.velocity, grid, noise, metric=metric, batch_size=10, progress=False
    )
    np.testing.assert_allclose(ours, naive_cost(FLOW.velocity, grid, noise, metric), rtol=1e-10)
    assert (np.tril(ours) == 0).all()


def test_batching_does_not_change_the_result() -> None:
    noise = np.random.default_rng(1).standard_normal((50, 2))
    grid = steps.time_grid(20)
    whole = steps.cost_matrix(FLOW.velocity, grid, noise, batch_size=50, progress=False)
    pieces = steps.cost_matrix(FLOW.velocity, grid, noise, batch_size=7, progress=False)
    np.testing.assert_allclose(whole, pieces, rtol=1e-12)


def test_exactly_n_velocity_evaluations_per_sample() -> None:
    seen = []

    def counting(x, t):  # type: ignore[no-untyped-def]
        seen.append(len(x))
        return FLOW.velocity(x, t)

    noise = np.random.default_rng(2).standard_normal((30, 2))
    steps.cost_matrix(counting, steps.time_grid(15), noise, batch_size=8, progress=False)
    assert sum(seen) == 15 * 30


def test_torch_and_numpy_agree_and_float32_works() -> None:
    torch = pytest.importorskip("torch")
    noise = np.random.default_rng(3).standard_normal((40, 2)).astype(np.float32)
    grid = steps.time_grid(10)
    with_numpy = steps.cost_matrix(FLOW.velocity, grid, noise, progress=False)
    with_torch = steps.cost_matrix(FLOW.velocity, grid, torch.from_numpy(noise), progress=False)
    np.testing.assert_allclose(with_numpy, with_torch, rtol=1e-5)


def test_callable_metric_equals_builtin_l2() -> None:
    noise = np.random.default_rng(4).standard_normal((20, 2))
    grid = steps.time_grid(8)

    def l2(prediction, target):  # type: ignore[no-untyped-def]
        return np.linalg.norm((prediction - target).reshape(len(target), -1), axis=1)

    builtin = steps.cost_matrix(FLOW.velocity, grid, noise, progress=False)
    custom = steps.cost_matrix(FLOW.velocity, grid, noise, metric=l2, progress=False)
    np.testing.assert_allclose(builtin, custom, rtol=1e-10)


def test_image_shaped_states() -> None:
    rng = np.random.default_rng(5)
    target = rng.standard_normal((3, 4, 4))

    def to_image(x, t):  # type: ignore[no-untyped-def]
        return (target[None] - x) / np.maximum(1 - t, 0.05)[:, None, None, None]

    noise = rng.standard_normal((6, 3, 4, 4))
    grid = steps.time_grid(6)
    np.testing.assert_allclose(
        steps.cost_matrix(to_image, grid, noise, progress=False),
        naive_cost(to_image, grid, noise),
        rtol=1e-10,
    )


def test_bad_input() -> None:
    noise = np.zeros((4, 2))
    grid = steps.time_grid(4)
    with pytest.raises(thrifty.ShapeError, match="velocity must return the shape"):
        steps.cost_matrix(lambda x, t: x[:, :1], grid, noise, progress=False)
    with pytest.raises(thrifty.ShapeError, match="grid"):
        steps.cost_matrix(FLOW.velocity, np.array([]), noise, progress=False)
    with pytest.raises(thrifty.InvalidArgumentError, match="strictly increasing"):
        steps.cost_matrix(FLOW.velocity, np.array([0.0, 0.5, 0.5, 1.0]), noise, progress=False)
    with pytest.raises(thrifty.DTypeError, match="noise must be floating"):
        steps.cost_matrix(FLOW.velocity, grid, np.zeros((4, 2), dtype=np.int64), progress=False)
    with pytest.raises(thrifty.InvalidArgumentError, match="metric"):
        steps.cost_matrix(FLOW.velocity, grid, noise, metric="lpips", progress=False)  # type: ignore[arg-type]
    with pytest.raises(thrifty.InvalidArgumentError, match="batch_size"):
        steps.cost_matrix(FLOW.velocity, grid, noise, batch_size=0, progress=False)
    with pytest.raises(thrifty.DTypeError, match="velocity must return"):
        steps.cost_matrix(lambda x, t: x.tolist(), grid, noise, progress=False)
