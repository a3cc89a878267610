"""schedule() holds one batch of samples at a time, and its answer does not depend on the
batch size."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest

import thrifty
from thrifty import steps

RING = steps.GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.05)
N = 20
K = 3
SAMPLES = 24
MIXING = np.random.default_rng(7).standard_normal((2, 2)).astype(np.float32) * 0.5


def image_velocity(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A per-pixel channel mixing with a time term: each sample's velocity depends on that
    sample alone, whatever batch it comes in."""
    mixed = np.einsum("ij,bjhw->bihw", MIXING, x)
    return np.tanh(mixed) - x * t[:, None, None, None]


def noise(shape: tuple[int, ...], samples: int = SAMPLES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((samples, *shape)).astype(np.float32)


def budget(batch: int, shape: tuple[int, ...], n: int = N) -> int:
    """The max_memory that gives DP batches of ``batch`` samples (with the student DP)."""
    return batch * (4 * n + 1) * math.prod(shape) * 4


def run(velocity: Any, shape: tuple[int, ...], **kwargs: Any) -> steps.Schedule:
    return steps.schedule(
        velocity,
        K,
        n=N,
        samples=noise(shape),
        validation=noise(shape, seed=1),
        refine_budget=4,
        progress=False,
        **kwargs,
    )


def assert_same(a: steps.Schedule, b: steps.Schedule) -> None:
    assert a.method == b.method
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.step_errors, b.step_errors)
    assert a.cost == b.cost
    assert a.validation_error == b.validation_error
    assert a.report == b.report


@pytest.mark.parametrize(
    ("velocity", "shape", "metric"),
    [
        (RING.velocity, (2,), "l2"),
        (RING.velocity, (2,), "l1"),
        (image_velocity, (2, 3, 3), "l2"),
    ],
)
def test_every_batch_size_gives_the_same_bits(velocity: Any, shape: Any, metric: str) -> None:
    whole = run(velocity, shape, metric=metric)
    assert set(whole.report) >= {"bellman", "student", "bellman+refine", "student+refine"}
    for batch in (1, 5, SAMPLES - 1):
        assert_same(run(velocity, shape, metric=metric, max_memory=budget(batch, shape)), whole)


def test_a_callable_metric_is_batch_size_free_too() -> None:
    def l2(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.linalg.norm((prediction - target).reshape(len(prediction), -1), axis=1)

    whole = run(RING.velocity, (2,), metric=l2, method="student")
    assert_same(run(RING.velocity, (2,), metric=l2, method="student", max_memory=1), whole)


def test_the_cost_is_the_cost_matrix_of_the_training_noise() -> None:
    chosen = run(RING.velocity, (2,), method="bellman", refine=False, max_memory=budget(5, (2,)))
    cost = steps.cost_matrix(RING.velocity, chosen.grid, noise((2,)), progress=False)
    np.testing.assert_array_equal(chosen.step_errors, cost[chosen.indices[:-1], chosen.indices[1:]])


class Recorder:
    """A velocity that remembers the largest batch it was called with."""

    def __init__(self) -> None:
        self.largest = 0

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        self.largest = max(self.largest, x.shape[0])
        return image_velocity(x, t)


def test_memory_is_one_batch_not_n_times_samples() -> None:
    shape, n, samples = (2, 8, 8), 40, 64
    state_bytes = math.prod(shape) * 4
    max_memory = budget(1, shape, n)
    velocity = Recorder()
    x = noise(shape, samples)
    # Modules the first call imports would count in the peak.
    steps.schedule(velocity, K, n=4, samples=x[:2], refine_budget=2, max_memory=1, progress=False)
    velocity.largest = 0
    tracemalloc.start()
    try:
        steps.schedule(
            velocity, K, n=n, samples=x, refine_budget=2, max_memory=max_memory, progress=False
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Sampling may take a larger batch than the DPs: it holds states, not trajectories.
    assert velocity.largest <= max_memory // (10 * state_bytes) < samples
    # The noise, the endpoints and the validation pair are samples * state each; one
    # batch's trajectories are max_memory. The teacher alone would be (n + 1) * samples
    # states, more than six times what is held (the code before batching peaked at 25x).
    held = 4 * samples * state_bytes + max_memory
    assert peak < 2 * held
    assert (n + 1) * samples * state_bytes > 6 * held


def test_the_velocity_sees_every_sample_at_once_when_they_fit() -> None:
    velocity = Recorder()
    run(velocity, (2, 3, 3), method="student")
    assert velocity.largest == SAMPLES


def test_torch_noise_in_batches() -> None:
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(noise((2,)))

    def schedule(max_memory: int) -> steps.Schedule:
        return steps.schedule(
            RING.velocity, K, n=N, samples=x, refine=False, max_memory=max_memory, progress=False
        )

    assert_same(schedule(budget(5, (2,))), schedule(budget(SAMPLES, (2,))))


@pytest.mark.parametrize("max_memory", [0, -1, 1.5, "1GB", True, None])
def test_bad_max_memory(max_memory: Any) -> None:
    with pytest.raises(thrifty.InvalidArgumentError, match="max_memory") as raised:
        steps.schedule(
            RING.velocity, 2, n=10, samples=8, shape=(2,), max_memory=max_memory, progress=False
        )
    assert raised.value.argument == "max_memory"
