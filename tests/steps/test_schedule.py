"""Schedules on analytic flows whose exact solutions are known, against uniform steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

import thrifty
from thrifty import steps

SHARP = steps.GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.05)
# The moderate ring: schedules matter less on it, so only "never worse" is asked of it.
MODERATE = steps.GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.15)
BROAD = steps.GaussianMixtureFlow(
    means=np.array([[-1.0, 0.0], [1.5, 0.5]]), stds=np.array([1.0, 0.8]), weights=np.ones(2)
)


_EXACT: dict[int, np.ndarray] = {}


def exact_error(flow: steps.GaussianMixtureFlow, times: np.ndarray, noise: np.ndarray) -> float:
    if id(flow) not in _EXACT:
        _EXACT[id(flow)] = flow.solve(noise)
    exact = _EXACT[id(flow)]
    ours = steps.sample(flow.velocity, noise, times)
    return float(np.linalg.norm(ours - exact, axis=1).mean())


@pytest.fixture(scope="module")
def fresh_noise() -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((400, 2))


@pytest.mark.parametrize("k", [4, 8])
@pytest.mark.parametrize(
    ("name", "flow", "must_gain"),
    [("sharp", SHARP, 0.75), ("moderate", MODERATE, None), ("broad", BROAD, None)],
)
def test_auto_is_never_worse_than_uniform_on_fresh_noise(
    k: int,
    name: str,
    flow: steps.GaussianMixtureFlow,
    must_gain: float | None,
    fresh_noise: np.ndarray,
    record_property: pytest.RecordProperty,
) -> None:
    chosen = steps.schedule(flow.velocity, k, n=100, samples=256, shape=(2,), progress=False)
    errors = {
        method: exact_error(flow, np.asarray(report["times"]), fresh_noise)
        for method, report in chosen.report.items()
    }
    auto = exact_error(flow, chosen.times, fresh_noise)
    uniform = errors["uniform"]
    record_property("errors", json.dumps({"auto": auto, **errors}))
    print(
        f"\n{name} K={k}: auto ({chosen.method}) {auto:.4f}; "
        + ", ".join(f"{m} {e:.4f}" for m, e in errors.items())
    )
    # Validation noise is not the fresh noise, so allow the sampling error of 400 samples.
    assert auto <= uniform * 1.02
    if must_gain is not None:
        assert auto <= must_gain * uniform


def test_student_dp_beats_teacher_bellman_on_the_sharp_ring(fresh_noise: np.ndarray) -> None:
    kwargs = {"n": 100, "samples": 256, "shape": (2,), "refine": False, "progress": False}
    bellman = steps.schedule(SHARP.velocity, 4, method="bellman", **kwargs)
    student = steps.schedule(SHARP.velocity, 4, method="student", **kwargs)
    assert exact_error(SHARP, student.times, fresh_noise) < exact_error(
        SHARP, bellman.times, fresh_noise
    )


def test_schedule_fields_and_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chosen = steps.schedule(SHARP.velocity, 3, n=30, samples=32, shape=(2,), progress=False)
    assert chosen.k == 3
    assert chosen.times[0] == 0.0
    assert chosen.times[-1] == 1.0
    assert chosen.indices.tolist()[0] == 0
    assert chosen.indices.tolist()[-1] == 30
    assert chosen.step_errors.shape == (3,)
    assert chosen.cost == pytest.approx(chosen.step_errors.sum())
    assert set(chosen.report) >= {"uniform", "edm", "bellman", "student"}
    np.testing.assert_allclose(chosen.sigmas(), 1 - chosen.times)
    chosen.save(tmp_path / "s.json")
    loaded = steps.Schedule.load(tmp_path / "s.json")
    np.testing.assert_array_equal(loaded.times, chosen.times)
    assert loaded.method == chosen.method
    assert loaded.report == chosen.report
    picture = chosen.plot(tmp_path / "s.png")
    assert picture.stat().st_size > 1000


def test_given_noise_and_torch_velocity() -> None:
    torch = pytest.importorskip("torch")
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    chosen = steps.schedule(SHARP.velocity, 2, n=20, samples=noise, progress=False, refine=False)
    assert chosen.k == 2


@pytest.mark.parametrize("budget", [1, 3, 5])
def test_refinement_spends_exactly_its_budget(budget: int) -> None:
    # Each endpoint evaluation of a k-step schedule is k velocity calls on the training
    # batch; refining adds its start's evaluation, `budget` trials, and the refined
    # candidate's train and validation errors. The pattern search must stop at the budget
    # even in the middle of a sweep over the knots.
    k, n = 6, 60

    def run(refine: bool) -> int:
        count = [0]

        def velocity(x: np.ndarray, t: float) -> np.ndarray:
            count[0] += 1
            return SHARP.velocity(x, t)

        steps.schedule(
            velocity, k, n=n, samples=4, shape=(2,), method="uniform", refine=refine,
            refine_budget=budget, progress=False,
        )  # fmt: skip
        return count[0]

    assert run(True) - run(False) == k * (1 + budget + 2)


def test_bad_arguments() -> None:
    with pytest.raises(thrifty.InvalidArgumentError, match="shape"):
        steps.schedule(SHARP.velocity, 2, n=10, samples=8, progress=False)
    with pytest.raises(thrifty.InvalidArgumentError, match="k must be"):
        steps.schedule(SHARP.velocity, 11, n=10, samples=8, shape=(2,), progress=False)
    with pytest.raises(thrifty.InvalidArgumentError, match="method"):
        steps.schedule(SHARP.velocity, 2, n=10, samples=8, shape=(2,), method="x", progress=False)  # type: ignore[arg-type]
    with pytest.raises(thrifty.ShapeError, match="velocity"):
        steps.schedule(lambda x, t: x[:, :1], 2, n=10, samples=8, shape=(2,), progress=False)
