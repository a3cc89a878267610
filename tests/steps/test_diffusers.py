"""The sigmas a diffusers scheduler ends up with equal the schedule's."""

from __future__ import annotations

import numpy as np
import pytest

import thrifty
from thrifty import steps

diffusers = pytest.importorskip("diffusers")

TIMES = np.array([0.0, 0.12, 0.4, 0.71, 0.93, 1.0])


@pytest.mark.parametrize("shift", [1.0, 3.0, 7.5])
def test_flow_match_static_shift_is_not_applied_twice(shift: float) -> None:
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    steps.Schedule(times=TIMES).to_diffusers(scheduler)
    np.testing.assert_allclose(scheduler.sigmas.numpy(), 1 - TIMES, atol=1e-6)
    assert len(scheduler.timesteps) == len(TIMES) - 1
    np.testing.assert_allclose(scheduler.timesteps.numpy(), 1000 * (1 - TIMES[:-1]), rtol=1e-5)


@pytest.mark.parametrize("kind", ["exponential", "linear"])
def test_flow_match_dynamic_shift(kind: str) -> None:
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, time_shift_type=kind
    )
    steps.Schedule(times=TIMES).to_diffusers(scheduler, mu=1.15)
    np.testing.assert_allclose(scheduler.sigmas.numpy(), 1 - TIMES, atol=1e-6)
    with pytest.raises(thrifty.InvalidArgumentError, match="mu"):
        steps.Schedule(times=TIMES).to_diffusers(scheduler)


def test_euler_discrete_gets_n_plus_one_sigmas_with_the_terminal_zero() -> None:
    scheduler = diffusers.EulerDiscreteScheduler()
    steps.Schedule(times=TIMES).to_diffusers(scheduler)
    sigmas = scheduler.sigmas.numpy()
    assert len(sigmas) == len(TIMES)
    assert sigmas[-1] == 0.0
    np.testing.assert_allclose(sigmas[1:-1], (1 - TIMES[1:-1]) / TIMES[1:-1], rtol=1e-5)
    assert len(scheduler.timesteps) == len(TIMES) - 1


def test_sampling_through_the_scheduler_matches_thrifty_sample() -> None:
    torch = pytest.importorskip("torch")
    flow = steps.GaussianMixtureFlow.ring()
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    steps.Schedule(times=TIMES).to_diffusers(scheduler)
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = noise.clone()
    for t in scheduler.timesteps:
        sigma = float(t) / 1000
        # diffusers' flow models predict d x / d sigma = -(d x / d t)
        model_output = -flow.velocity(x, x.new_full((len(x),), 1 - sigma))
        x = scheduler.step(model_output, t, x).prev_sample
    expected = steps.sample(flow.velocity, noise, TIMES)
    np.testing.assert_allclose(x.numpy(), expected.numpy(), atol=1e-4)


def test_refuses_schedulers_that_rewrite_custom_sigmas() -> None:
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)
    with pytest.raises(thrifty.InvalidArgumentError, match="use_karras_sigmas"):
        steps.Schedule(times=TIMES).to_diffusers(scheduler)
    with pytest.raises(thrifty.InvalidArgumentError, match="scheduler must be"):
        steps.Schedule(times=TIMES).to_diffusers(object())
