"""Straightening pairs against a hand-rolled teacher, the loss, and a short fine-tune."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import thrifty
from thrifty import steps

A = np.array([[-0.5, 1.0], [-1.0, -0.5]])
GRID = steps.time_grid(12, "edm")
KNOTS = [0, 3, 7, 12]


def linear_velocity(x: Any, t: Any) -> Any:
    """``v = A x (1 + t)``: a spiral whose Euler teacher is easy to roll by hand."""
    return (x @ A.T) * (1.0 + t[:, None])


def noise(samples: int = 10, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((samples, 2))


def hand_rolled(x0: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    states = [x0]
    for i in range(len(GRID) - 1):
        t = np.full(len(x0), GRID[i])
        states.append(states[-1] + float(GRID[i + 1] - GRID[i]) * linear_velocity(states[-1], t))
    return states


def test_pairs_are_the_teachers_jumps() -> None:
    x0 = noise()
    pairs = steps.straightening_pairs(linear_velocity, x0, GRID, KNOTS)
    states = hand_rolled(x0)
    assert len(pairs) == 3 * 10
    assert pairs.jumps == 3
    for j, (i, k) in enumerate(itertools.pairwise(KNOTS)):
        rows = slice(j * 10, (j + 1) * 10)
        np.testing.assert_allclose(pairs.states[rows], states[i], rtol=1e-14, atol=0)
        np.testing.assert_array_equal(pairs.times[rows], np.full(10, GRID[i]))
        expected = (states[k] - states[i]) / (GRID[k] - GRID[i])
        np.testing.assert_allclose(pairs.targets[rows], expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(pairs.knots, KNOTS)
    np.testing.assert_array_equal(pairs.grid, GRID)


def test_pairs_sit_on_samples_trajectory() -> None:
    x0 = noise()
    pairs = steps.straightening_pairs(linear_velocity, x0, GRID, KNOTS)
    end, trajectory = steps.sample(linear_velocity, x0, GRID, return_trajectory=True)
    for j, i in enumerate(KNOTS[:-1]):
        np.testing.assert_array_equal(pairs.states[j * 10 : (j + 1) * 10], trajectory[i])
    # One Euler step along the last target lands on the teacher's endpoint.
    last = slice(20, 30)
    jump = pairs.states[last] + (GRID[12] - GRID[7]) * pairs.targets[last]
    np.testing.assert_allclose(jump, end, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_size", [1, 3, 10, 64])
def test_batching_gives_identical_pairs(batch_size: int) -> None:
    x0 = noise()
    whole = steps.straightening_pairs(linear_velocity, x0, GRID, KNOTS)
    batched = steps.straightening_pairs(linear_velocity, x0, GRID, KNOTS, batch_size=batch_size)
    for name in ("states", "times", "targets"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(whole, name))


@pytest.mark.parametrize("batch_size", [None, 4])
def test_the_teacher_costs_exactly_n_evaluations_per_sample(batch_size: int | None) -> None:
    rows: list[int] = []

    def counting(x: Any, t: Any) -> Any:
        rows.append(int(x.shape[0]))
        return linear_velocity(x, t)

    steps.straightening_pairs(counting, noise(10), GRID, KNOTS, batch_size=batch_size)
    n = len(GRID) - 1
    assert sum(rows) == n * 10
    assert len(rows) == n * math.ceil(10 / (batch_size or 10))
    assert max(rows) <= (batch_size or 10)


def test_knots_may_come_from_a_schedule_or_a_tensor() -> None:
    torch = pytest.importorskip("torch")
    x0 = noise()
    plain = steps.straightening_pairs(linear_velocity, x0, GRID, np.array(KNOTS))
    schedule = SimpleNamespace(indices=np.array(KNOTS, dtype=np.int64), times=GRID[KNOTS])
    for knots in (schedule, torch.tensor(KNOTS)):
        other = steps.straightening_pairs(linear_velocity, x0, GRID, knots)
        np.testing.assert_array_equal(other.targets, plain.targets)


def test_loss_is_zero_for_a_model_that_looks_the_targets_up() -> None:
    pairs = steps.straightening_pairs(linear_velocity, noise(), GRID, KNOTS)
    table = {
        (row.tobytes(), float(t)): target
        for row, t, target in zip(pairs.states, pairs.times, pairs.targets, strict=True)
    }

    def lookup(x: Any, t: Any) -> Any:
        return np.stack([table[(row.tobytes(), float(s))] for row, s in zip(x, t, strict=True)])

    def off_by(delta: float) -> Any:
        return lambda x, t: lookup(x, t) + delta

    assert steps.straightening_loss(lookup, pairs) == 0.0
    for batch in pairs.batches(7, seed=1):
        assert steps.straightening_loss(lookup, batch) == 0.0
    # Every pair is off by 0.1 in both coordinates: 0.02 each.
    assert steps.straightening_loss(off_by(0.1), pairs) == pytest.approx(0.02)
    assert steps.straightening_loss(off_by(0.1), pairs, reduction="sum") == pytest.approx(0.6)
    per_pair = steps.straightening_loss(off_by(0.1), pairs, reduction="none")
    np.testing.assert_allclose(per_pair, np.full(30, 0.02))
    assert isinstance(steps.straightening_loss(off_by(0.1), pairs), np.float64)
    # The teacher's own velocity is not straight: it misses the jumps.
    assert steps.straightening_loss(linear_velocity, pairs) > 1e-3


def test_batches_visit_every_pair_once_in_a_seeded_order() -> None:
    pairs = steps.straightening_pairs(linear_velocity, noise(), GRID, KNOTS)
    seen = np.concatenate([b[0] for b in pairs.batches(8, seed=3)])
    again = np.concatenate([b[0] for b in pairs.batches(8, seed=3)])
    other = np.concatenate([b[0] for b in pairs.batches(8, seed=4)])
    in_order = np.concatenate([b[0] for b in pairs.batches(8, shuffle=False)])
    np.testing.assert_array_equal(seen, again)
    assert not np.array_equal(seen, other)
    np.testing.assert_array_equal(in_order, pairs.states)
    assert sorted(map(bytes, seen)) == sorted(map(bytes, pairs.states))


def test_torch_pairs_keep_framework_dtype_and_the_loss_has_a_graph() -> None:
    torch = pytest.importorskip("torch")
    flow = steps.GaussianMixtureFlow.ring(modes=4, radius=2.0, std=0.3)
    x0 = torch.from_numpy(noise(32)).float()
    pairs = steps.straightening_pairs(flow.velocity, x0, steps.time_grid(10), [0, 4, 10])
    for tensor in (pairs.states, pairs.times, pairs.targets):
        assert isinstance(tensor, torch.Tensor)
        assert tensor.dtype == torch.float32
        assert not tensor.requires_grad
    assert pairs.times.shape == (64,)
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)

    def model(x: Any, t: Any) -> Any:
        return layer(torch.cat([x, t[:, None]], dim=1))

    loss = steps.straightening_loss(model, pairs)
    assert loss.ndim == 0
    assert loss.item() > 0
    loss.backward()
    assert layer.weight.grad is not None
    assert layer.weight.grad.abs().sum() > 0
    dataset = pairs.to_dataset()
    assert len(dataset) == len(pairs)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=16)))
    assert steps.straightening_loss(model, batch).shape == ()


def test_fine_tuning_straightens_the_model_and_improves_its_k_step_endpoint() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    flow = steps.GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.15)
    grid = steps.time_grid(48)
    knots = [0, 20, 48]
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 128),
        torch.nn.SiLU(),
        torch.nn.Linear(128, 128),
        torch.nn.SiLU(),
        torch.nn.Linear(128, 2),
    )

    def model(x: Any, t: Any) -> Any:
        return net(torch.cat([x, t[:, None]], dim=1))

    # "Pretraining": distil the exact marginal velocity, as a flow-matching network would be.
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    for step in range(300):
        x0 = rng.standard_normal((256, 2))
        x1 = flow.sample_data(256, seed=step)
        t = rng.uniform(0.0, 1.0, 256)
        xt = torch.from_numpy(t[:, None] * x1 + (1 - t[:, None]) * x0).float()
        tt = torch.from_numpy(t).float()
        loss = ((model(xt, tt) - flow.velocity(xt, tt)) ** 2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train = steps.straightening_pairs(
        flow.velocity, torch.from_numpy(noise(2048, seed=1)).float(), grid, knots
    )
    held_out_noise = torch.from_numpy(noise(512, seed=2)).float()
    held_out = steps.straightening_pairs(flow.velocity, held_out_noise, grid, knots)
    teacher_end = steps.sample(flow.velocity, held_out_noise, grid)

    def measure() -> tuple[float, float]:
        with torch.no_grad():
            loss = float(steps.straightening_loss(model, held_out))
        end = steps.sample(model, held_out_noise, grid[knots])
        return loss, float((end - teacher_end).norm(dim=1).mean())

    loss_before, error_before = measure()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        train.to_dataset(), batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    for _ in range(40):
        for batch in loader:
            loss = steps.straightening_loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    loss_after, error_after = measure()
    assert loss_after < loss_before / 4
    assert error_after < error_before / 2


@pytest.mark.parametrize(
    ("knots", "error", "argument"),
    [
        ([1, 5, 12], thrifty.InvalidArgumentError, "knots"),
        ([0, 5, 11], thrifty.InvalidArgumentError, "knots"),
        ([0, 5, 13], thrifty.InvalidArgumentError, "knots"),
        ([0, 7, 7, 12], thrifty.InvalidArgumentError, "knots"),
        ([0, 8, 5, 12], thrifty.InvalidArgumentError, "knots"),
        ([0.0, 6.0, 12.0], thrifty.DTypeError, "knots"),
        ([[0, 12]], thrifty.ShapeError, "knots"),
        ([0], thrifty.ShapeError, "knots"),
        (SimpleNamespace(indices=np.zeros(0, dtype=np.int64)), thrifty.ShapeError, "knots"),
    ],
)
def test_bad_knots_are_named(knots: Any, error: type[Exception], argument: str) -> None:
    with pytest.raises(error) as caught:
        steps.straightening_pairs(linear_velocity, noise(), GRID, knots)
    assert getattr(caught.value, "argument", None) == argument
    assert str(caught.value).startswith(argument)


@pytest.mark.parametrize(
    ("x0", "grid", "options", "error", "argument"),
    [
        (np.zeros((10, 2), dtype=np.int32), GRID, {}, thrifty.DTypeError, "noise"),
        (np.zeros(10), GRID, {}, thrifty.ShapeError, "noise"),
        ([[0.0, 1.0]], GRID, {}, thrifty.DTypeError, "noise"),
        (noise(), GRID[::-1], {}, thrifty.InvalidArgumentError, "grid"),
        (noise(), GRID, {"batch_size": 0}, thrifty.InvalidArgumentError, "batch_size"),
        (noise(), GRID, {"batch_size": 2.5}, thrifty.InvalidArgumentError, "batch_size"),
    ],
)
def test_bad_pair_arguments_are_named(
    x0: Any, grid: Any, options: dict[str, Any], error: type[Exception], argument: str
) -> None:
    with pytest.raises(error) as caught:
        steps.straightening_pairs(linear_velocity, x0, grid, KNOTS, **options)
    assert getattr(caught.value, "argument", None) == argument


def test_bad_loss_arguments_are_named() -> None:
    pairs = steps.straightening_pairs(linear_velocity, noise(), GRID, KNOTS)
    cases: list[tuple[Any, Any, dict[str, Any], type[Exception], str]] = [
        (linear_velocity, pairs, {"reduction": "avg"}, thrifty.InvalidArgumentError, "reduction"),
        ("model", pairs, {}, thrifty.InvalidArgumentError, "model"),
        (lambda x, t: x[:, :1], pairs, {}, thrifty.ShapeError, "model"),
        (lambda x, t: x.tolist(), pairs, {}, thrifty.DTypeError, "model"),
        (linear_velocity, (pairs.states, pairs.times), {}, thrifty.InvalidArgumentError, "pairs"),
        (
            linear_velocity,
            (pairs.states, pairs.times[:3], pairs.targets),
            {},
            thrifty.ShapeError,
            "pairs",
        ),
        (
            linear_velocity,
            (pairs.states, pairs.times, pairs.targets[:, :1]),
            {},
            thrifty.ShapeError,
            "pairs",
        ),
        (
            linear_velocity,
            (pairs.states, pairs.times.tolist(), pairs.targets),
            {},
            thrifty.DTypeError,
            "pairs",
        ),
    ]
    for model, given, options, error, argument in cases:
        with pytest.raises(error) as caught:
            steps.straightening_loss(model, given, **options)
        assert getattr(caught.value, "argument", None) == argument


@pytest.mark.gpu
def test_cuda_pairs_match_cpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    flow = steps.GaussianMixtureFlow.ring()
    x0 = torch.from_numpy(noise(64)).double()
    cpu = steps.straightening_pairs(flow.velocity, x0, steps.time_grid(16), [0, 6, 16])
    gpu = steps.straightening_pairs(flow.velocity, x0.cuda(), steps.time_grid(16), [0, 6, 16])
    assert gpu.states.is_cuda
    assert gpu.times.is_cuda
    np.testing.assert_allclose(gpu.targets.cpu().numpy(), cpu.targets.numpy(), rtol=1e-10)
