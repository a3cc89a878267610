"""Bottleneck Sampling: the plan's bookkeeping, and runs on analytic resolution-free flows."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import thrifty
from thrifty import steps

SHAPE = (2, 3, 16, 16)


def smooth_image(shape: tuple[int, ...] = SHAPE) -> np.ndarray[Any, Any]:
    """A smooth float64 image, different in every channel and batch element."""
    batch, channels, height, width = shape
    rows = np.linspace(0.0, 1.0, height)[:, None]
    columns = np.linspace(0.0, 1.0, width)[None, :]
    image = np.empty(shape)
    for b in range(batch):
        for c in range(channels):
            image[b, c] = np.sin(2.0 * rows + c + b) * np.cos(3.0 * columns - c)
    return image


def block_mean(image: Any, size: tuple[int, int]) -> Any:
    """Area downsampling by whole factors, written independently of the library."""
    batch, channels, height, width = image.shape
    h, w = size
    blocks = image.reshape(batch, channels, h, height // h, w, width // w)
    if isinstance(image, np.ndarray):
        return blocks.mean(axis=(3, 5))
    return blocks.mean(dim=(3, 5))


def point_mass_velocity(target: Any, log: list[tuple[float, tuple[int, ...], Any]]) -> Any:
    """Rectified flow to a point mass at ``target`` seen at the input's resolution:
    ``v = (x1 - x) / (1 - t)``; logs each call's time, shape and input."""

    def velocity(x: Any, t: Any) -> Any:
        log.append((float(t[0]), tuple(int(d) for d in x.shape), x))
        x1 = target if tuple(x.shape) == tuple(target.shape) else block_mean(target, x.shape[2:])
        return (x1 - x) / (1.0 - t[:, None, None, None])

    return velocity


def gaussian_velocity(mean: Any, std: float) -> Any:
    """The exact velocity of rectified flow to N(mean, std^2 I), at any resolution (the mean
    is area-averaged and the std divided by the pooling factor, as averaging does)."""

    def velocity(x: Any, t: Any) -> Any:
        factor = mean.shape[2] // x.shape[2]
        mu = mean if factor == 1 else block_mean(mean, x.shape[2:])
        s2 = (std / factor) ** 2
        tt = t[:, None, None, None]
        gain = (tt * s2 - (1.0 - tt)) / (tt**2 * s2 + (1.0 - tt) ** 2)
        return mu + gain * (x - tt * mu)

    return velocity


def noise(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------- the plan


@st.composite
def plans(draw: st.DrawFn) -> tuple[int, list[tuple[float, float]], float, float]:
    count = draw(st.integers(1, 6))
    scales = [draw(st.sampled_from([0.25, 0.5, 0.75, 1.0])) for _ in range(count - 1)]
    weights = [draw(st.floats(0.01, 10.0)) for _ in range(count)]
    total = sum(weights)
    stages = [(s, w / total) for s, w in zip([*scales, 1.0], weights, strict=True)]
    k = draw(st.integers(count, 300))
    shift = draw(st.sampled_from([0.3, 1.0, 3.0]))
    renoise = draw(st.floats(0.0, 1.0))
    return k, stages, shift, renoise


@settings(max_examples=300, deadline=None)
@given(plans())
def test_plan_steps_sum_to_k_and_times_are_valid(
    case: tuple[int, list[tuple[float, float]], float, float],
) -> None:
    k, stages, shift, renoise = case
    plan = steps.bottleneck_plan(k, stages, shift=shift, renoise=renoise)
    counts = [stage.steps for stage in plan.stages]
    assert sum(counts) == k == plan.k
    assert min(counts) >= 1
    assert [stage.scale for stage in plan.stages] == [s for s, _ in stages]
    for stage in plan.stages:
        assert stage.times.shape == (stage.steps + 1,)
        assert (np.diff(stage.times) > 0).all()
        assert stage.times[0] >= 0.0
        assert stage.times[-1] <= 1.0
        assert stage.renoise_time == stage.times[0]
    assert plan.stages[0].times[0] == 0.0
    assert plan.stages[-1].times[-1] == 1.0
    quotas = [f * k for _, f in stages]
    if min(quotas) >= 1.0:
        # Largest remainder never strays a whole step from a stage's quota.
        assert all(abs(n - q) < 1.0 for n, q in zip(counts, quotas, strict=True))


@pytest.mark.parametrize(
    ("k", "fractions", "expected"),
    [
        (10, (0.2, 0.6, 0.2), [2, 6, 2]),
        (4, (0.2, 0.6, 0.2), [1, 2, 1]),
        (3, (0.2, 0.6, 0.2), [1, 1, 1]),
        (34, (0.2, 0.6, 0.2), [7, 20, 7]),
        (7, (0.01, 0.98, 0.01), [1, 5, 1]),
    ],
)
def test_largest_remainder_counts(
    k: int, fractions: tuple[float, ...], expected: list[int]
) -> None:
    stages = tuple(zip((1.0, 0.5, 1.0), fractions, strict=True))
    assert [s.steps for s in steps.bottleneck_plan(k, stages).stages] == expected


def test_one_full_stage_is_the_uniform_grid() -> None:
    plan = steps.bottleneck_plan(7, ((1.0, 1.0),))
    np.testing.assert_array_equal(plan.stages[0].times, steps.time_grid(7))
    shifted = steps.bottleneck_plan(7, ((1.0, 1.0),), shift=3.0)
    np.testing.assert_array_equal(shifted.stages[0].times, steps.time_grid(7, shift=3.0))


def test_default_plan_reproduces_the_papers_renoise_levels() -> None:
    plan = steps.bottleneck_plan(10)
    first, middle, last = plan.stages
    assert (first.scale, middle.scale, last.scale) == (1.0, 0.5, 1.0)
    assert (first.shift, middle.shift, last.shift) == (1.0, 0.5, 1.0)
    np.testing.assert_allclose(first.times, [0.0, 0.1, 0.2])
    # Into the bottleneck: sigma = 0.8 at full resolution, the same signal-to-noise ratio as
    # t = 2 * 0.2 / 1.2 after 2x2 averaging; out of it: sigma = 0.6 (paper, Table 4).
    assert middle.renoise_time == pytest.approx(1.0 / 3.0)
    assert steps.shift_times([middle.renoise_time], 1.0 / middle.shift)[0] == pytest.approx(0.2)
    assert last.renoise_time == pytest.approx(0.4)
    np.testing.assert_allclose(last.times, [0.4, 0.7, 1.0])
    assert plan.pixel_fraction == pytest.approx(0.55)


def test_single_shift_follows_the_sd3_resolution_rule_and_lists_are_taken_as_given() -> None:
    plan = steps.bottleneck_plan(12, ((1.0, 0.25), (0.5, 0.5), (1.0, 0.25)), shift=3.0)
    assert [s.shift for s in plan.stages] == [3.0, 1.5, 3.0]
    np.testing.assert_allclose(
        plan.stages[0].times, steps.shift_times([0, 1 / 12, 2 / 12, 3 / 12], 3.0)
    )
    given_shifts = steps.bottleneck_plan(12, shift=(9.0, 6.0, 9.0))
    assert [s.shift for s in given_shifts.stages] == [9.0, 6.0, 9.0]


def test_renoise_strength_moves_the_entry_time() -> None:
    stages = ((1.0, 0.3), (0.5, 0.4), (1.0, 0.3))
    none = steps.bottleneck_plan(10, stages, renoise=0.0)
    full = steps.bottleneck_plan(10, stages, renoise=1.0)
    mixed = steps.bottleneck_plan(10, stages, renoise=(0.25, 0.5))
    nominal = [steps.shift_times([0.3], 0.5)[0], 0.7]
    assert none.stages[1].renoise_time == pytest.approx(nominal[0])
    assert none.stages[2].renoise_time == pytest.approx(nominal[1])
    assert [s.renoise_time for s in full.stages] == [0.0, 0.0, 0.0]
    assert mixed.stages[1].renoise_time == pytest.approx(0.75 * nominal[0])
    assert mixed.stages[2].renoise_time == pytest.approx(0.5 * nominal[1])
    # Every stage ends where the base clock says, whatever it was entered at.
    for plan in (none, full, mixed):
        assert plan.stages[1].times[-1] == pytest.approx(steps.shift_times([0.7], 0.5)[0])


@pytest.mark.parametrize(
    ("k", "stages", "options", "argument"),
    [
        (2, ((1.0, 0.2), (0.5, 0.6), (1.0, 0.2)), {}, "k"),
        (0, ((1.0, 1.0),), {}, "k"),
        (5.0, ((1.0, 1.0),), {}, "k"),
        (True, ((1.0, 1.0),), {}, "k"),
        (5, (), {}, "stages"),
        (5, ((1.0, 0.5), (1.0, 0.4)), {}, "stages"),
        (5, ((1.0, 0.5), (0.5, 0.5)), {}, "stages"),
        (5, ((0.0, 0.5), (1.0, 0.5)), {}, "stages"),
        (5, ((1.5, 0.5), (1.0, 0.5)), {}, "stages"),
        (5, ((math.nan, 0.5), (1.0, 0.5)), {}, "stages"),
        (5, ((1.0, -0.5), (1.0, 1.5)), {}, "stages"),
        (5, ((1.0,),), {}, "stages"),
        (5, "ab", {}, "stages"),
        (5, ((1.0, "half"), (1.0, 0.5)), {}, "stages"),
        (5, ((1.0, 1.0),), {"shift": 0.0}, "shift"),
        (5, ((1.0, 1.0),), {"shift": math.inf}, "shift"),
        (5, ((1.0, 0.5), (1.0, 0.5)), {"shift": (1.0,)}, "shift"),
        (5, ((1.0, 0.5), (1.0, 0.5)), {"renoise": 1.5}, "renoise"),
        (5, ((1.0, 0.5), (1.0, 0.5)), {"renoise": -0.1}, "renoise"),
        (5, ((1.0, 0.5), (1.0, 0.5)), {"renoise": (0.1, 0.2)}, "renoise"),
        (5, ((1.0, 0.5), (1.0, 0.5)), {"renoise": "some"}, "renoise"),
    ],
)
def test_bad_plan_arguments_are_named(
    k: Any, stages: Any, options: dict[str, Any], argument: str
) -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        steps.bottleneck_plan(k, stages, **options)
    assert caught.value.argument == argument
    assert str(caught.value).startswith(argument)


def test_plan_round_trips_through_json_and_is_immutable() -> None:
    plan = steps.bottleneck_plan(9, shift=2.0, renoise=(0.1, 0.6))
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["k"] == 9
    assert [s["steps"] for s in data["stages"]] == [2, 5, 2]
    again = steps.BottleneckPlan.from_dict(data)
    assert again == plan
    assert again != steps.bottleneck_plan(9)
    with pytest.raises(ValueError, match="read-only"):
        plan.stages[0].times[0] = 0.5
    data["stages"][1]["steps"] = 4
    with pytest.raises(thrifty.InvalidArgumentError, match="steps"):
        steps.BottleneckPlan.from_dict(data)


def test_hand_built_plans_are_checked() -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        steps.BottleneckPlan((steps.BottleneckStage(1.0, [0.0, 0.5]),))
    assert caught.value.argument == "stages"
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        steps.BottleneckPlan((steps.BottleneckStage(0.5, [0.0, 1.0]),))
    assert caught.value.argument == "stages"
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        steps.BottleneckStage(1.0, [0.0, 0.5, 0.4])
    assert caught.value.argument == "times"
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        steps.BottleneckStage(2.0, [0.0, 1.0])
    assert caught.value.argument == "scale"


# ---------------------------------------------------------------- sampling


def curved_velocity(x: Any, t: Any) -> Any:
    return np.sin(x) * (1.0 + t[:, None, None, None]) - 0.3 * x


def torch_curved_velocity(x: Any, t: Any) -> Any:
    return x.sin() * (1.0 + t[:, None, None, None]) - 0.3 * x


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_one_stage_equals_sample_exactly(solver: Any) -> None:
    plan = steps.bottleneck_plan(6, ((1.0, 1.0),), shift=2.0)
    x0 = noise()
    ours = steps.sample_bottleneck(curved_velocity, x0, plan, solver=solver)
    reference = steps.sample(curved_velocity, x0, plan.stages[0].times, solver=solver)
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_one_stage_equals_sample_exactly_in_torch(solver: Any) -> None:
    torch = pytest.importorskip("torch")
    plan = steps.bottleneck_plan(6, ((1.0, 1.0),))
    x0 = torch.from_numpy(noise()).float()
    ours = steps.sample_bottleneck(torch_curved_velocity, x0, plan, solver=solver)
    reference = steps.sample(torch_curved_velocity, x0, plan.stages[0].times, solver=solver)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_high_low_high_reaches_the_point_mass_on_schedule(framework: str) -> None:
    target, x0 = smooth_image(), noise()
    if framework == "torch":
        torch = pytest.importorskip("torch")
        target, x0 = torch.from_numpy(target), torch.from_numpy(x0)
    log: list[tuple[float, tuple[int, ...], Any]] = []
    plan = steps.bottleneck_plan(10)
    x, info = steps.sample_bottleneck(point_mass_velocity(target, log), x0, plan, return_info=True)
    np.testing.assert_allclose(np.asarray(x), np.asarray(target), rtol=0, atol=1e-12)
    stage_shapes = [(2, 3, 16, 16), (2, 3, 8, 8), (2, 3, 16, 16)]
    assert info["nfe"] == plan.k == len(log) == 10
    assert info["shapes"] == stage_shapes
    # Every evaluation happens at the plan's node, at its stage's resolution.
    expected = [
        (float(t), shape)
        for stage, shape in zip(plan.stages, stage_shapes, strict=True)
        for t in stage.times[:-1]
    ]
    assert [(t, shape) for t, shape, _ in log] == expected
    # Fewer pixels than k full-resolution evaluations, by the plan's own account.
    seen = sum(math.prod(shape) for _, shape, _ in log)
    assert seen == plan.pixel_fraction * plan.k * math.prod(SHAPE)
    assert seen < plan.k * math.prod(SHAPE)


def test_transitions_renoise_the_resized_clean_sample_with_fresh_unit_noise() -> None:
    target = smooth_image()
    log: list[tuple[float, tuple[int, ...], Any]] = []
    plan = steps.bottleneck_plan(10)
    steps.sample_bottleneck(point_mass_velocity(target, log), noise(), plan, seed=3)
    low = block_mean(target, (8, 8))
    entries = {0: 2, 1: 8}  # the first evaluation of the second and third stages
    for transition, (clean, stage) in enumerate(
        [(low, plan.stages[1]), (low.repeat(2, axis=2).repeat(2, axis=3), plan.stages[2])]
    ):
        t_entry, _, x = log[entries[transition]]
        assert t_entry == stage.renoise_time
        eps = (x - t_entry * clean) / (1.0 - t_entry)
        # Pooled noise would have a standard deviation of 0.5; fresh noise has 1.
        assert abs(eps.mean()) < 0.15
        assert 0.85 < eps.std() < 1.15


def test_same_seed_same_result_and_other_seed_differs() -> None:
    velocity = gaussian_velocity(smooth_image(), 0.5)
    plan = steps.bottleneck_plan(12)
    a = steps.sample_bottleneck(velocity, noise(), plan, seed=7)
    b = steps.sample_bottleneck(velocity, noise(), plan, seed=7)
    c = steps.sample_bottleneck(velocity, noise(), plan, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize(
    "stages",
    [
        ((1.0, 0.3), (0.5, 0.4), (1.0, 0.3)),
        ((1.0, 0.3), (0.75, 0.3), (0.25, 0.2), (1.0, 0.2)),
    ],
)
def test_numpy_and_torch_agree(upsample: Any, stages: Any) -> None:
    torch = pytest.importorskip("torch")
    shape = (2, 3, 12, 12)
    velocity = curved_velocity

    def torch_velocity(x: Any, t: Any) -> Any:
        # The same field, through NumPy, so only the resizing and noise paths differ.
        return torch.from_numpy(velocity(x.numpy(), t.numpy()))

    plan = steps.bottleneck_plan(10, stages)
    x0 = noise(shape)
    ours = steps.sample_bottleneck(velocity, x0, plan, upsample=upsample, seed=1)
    theirs = steps.sample_bottleneck(
        torch_velocity, torch.from_numpy(x0), plan, upsample=upsample, seed=1
    )
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)


def test_heun_counts_two_evaluations_per_step() -> None:
    calls: list[int] = []
    field = gaussian_velocity(smooth_image(), 0.5)

    def velocity(x: Any, t: Any) -> Any:
        calls.append(int(x.shape[0]))
        return field(x, t)

    plan = steps.bottleneck_plan(10)
    x, info = steps.sample_bottleneck(velocity, noise(), plan, solver="heun", return_info=True)
    assert info["nfe"] == len(calls) == 2 * plan.k
    assert x.shape == SHAPE
    assert np.isfinite(x).all()


def test_a_custom_resize_is_used_at_every_transition() -> None:
    calls: list[tuple[tuple[int, ...], tuple[int, int]]] = []

    def resize(x: Any, size: tuple[int, int]) -> Any:
        calls.append((x.shape, size))
        if size[0] < x.shape[2]:
            return block_mean(x, size)
        factor = size[0] // x.shape[2]
        return x.repeat(factor, axis=2).repeat(factor, axis=3)

    plan = steps.bottleneck_plan(10)
    velocity = gaussian_velocity(smooth_image(), 0.5)
    ours = steps.sample_bottleneck(velocity, noise(), plan, resize=resize)
    builtin = steps.sample_bottleneck(velocity, noise(), plan)
    assert calls == [((2, 3, 16, 16), (8, 8)), ((2, 3, 8, 8), (16, 16))]
    np.testing.assert_allclose(ours, builtin, rtol=1e-12, atol=1e-12)


def test_a_low_resolution_first_stage_gets_unit_variance_noise() -> None:
    log: list[tuple[float, tuple[int, ...], Any]] = []
    x0 = noise((4, 3, 32, 32))
    target = smooth_image((4, 3, 32, 32))
    plan = steps.bottleneck_plan(6, ((0.5, 0.5), (1.0, 0.5)))
    steps.sample_bottleneck(point_mass_velocity(target, log), x0, plan)
    _, shape, first = log[0]
    assert shape == (4, 3, 16, 16)
    np.testing.assert_allclose(first, 2.0 * block_mean(x0, (16, 16)), rtol=1e-12)
    assert 0.9 < first.std() < 1.1


@pytest.mark.parametrize(
    ("x0", "plan", "options", "error", "argument"),
    [
        (noise((2, 3, 15, 16)), steps.bottleneck_plan(6), {}, thrifty.ShapeError, "noise"),
        (
            noise((2, 3, 16, 10)),
            steps.bottleneck_plan(6, ((1.0, 0.5), (0.25, 0.2), (1.0, 0.3))),
            {},
            thrifty.ShapeError,
            "noise",
        ),
        (noise((2, 16, 16)), steps.bottleneck_plan(6), {}, thrifty.ShapeError, "noise"),
        (
            np.zeros((2, 3, 16, 16), dtype=np.int64),
            steps.bottleneck_plan(6),
            {},
            thrifty.DTypeError,
            "noise",
        ),
        (noise(), "plan", {}, thrifty.InvalidArgumentError, "plan"),
        (
            noise(),
            steps.bottleneck_plan(6),
            {"solver": "rk4"},
            thrifty.InvalidArgumentError,
            "solver",
        ),
        (noise(), steps.bottleneck_plan(6), {"seed": -1}, thrifty.InvalidArgumentError, "seed"),
        (noise(), steps.bottleneck_plan(6), {"seed": True}, thrifty.InvalidArgumentError, "seed"),
        (
            noise(),
            steps.bottleneck_plan(6),
            {"upsample": "cubic"},
            thrifty.InvalidArgumentError,
            "upsample",
        ),
        (noise(), steps.bottleneck_plan(6), {"resize": 3}, thrifty.InvalidArgumentError, "resize"),
        (
            noise(),
            steps.bottleneck_plan(6),
            {"resize": lambda x, size: x},
            thrifty.ShapeError,
            "resize",
        ),
        (
            noise((2, 3, 12, 12)),
            steps.bottleneck_plan(6, ((0.75, 0.5), (1.0, 0.5))),
            {},
            thrifty.ShapeError,
            "noise",
        ),
    ],
)
def test_bad_sampling_arguments_are_named(
    x0: Any, plan: Any, options: dict[str, Any], error: type[Exception], argument: str
) -> None:
    with pytest.raises(error) as caught:
        steps.sample_bottleneck(curved_velocity, x0, plan, **options)
    assert getattr(caught.value, "argument", None) == argument


def test_a_velocity_that_ignores_the_resolution_is_caught() -> None:
    target = smooth_image()

    def full_resolution_only(x: Any, t: Any) -> Any:
        return (target - x) / (1.0 - t[:, None, None, None]) if x.shape == target.shape else target

    with pytest.raises(thrifty.ShapeError) as caught:
        steps.sample_bottleneck(full_resolution_only, noise(), steps.bottleneck_plan(6))
    assert caught.value.argument == "velocity"


@pytest.mark.gpu
def test_cuda_tensors_match_cpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    target = torch.from_numpy(smooth_image())
    velocity = gaussian_velocity(target, 0.5)

    def on_device(x: Any, t: Any) -> Any:
        return gaussian_velocity(target.to(x.device), 0.5)(x, t)

    plan = steps.bottleneck_plan(10)
    x0 = torch.from_numpy(noise())
    cpu = steps.sample_bottleneck(velocity, x0, plan, seed=2)
    gpu = steps.sample_bottleneck(on_device, x0.cuda(), plan, seed=2)
    assert gpu.is_cuda
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=1e-9, atol=1e-10)
