"""Fuzz entries of thrifty.steps: grids, the BOSS DP, cost matrices, samplers and plans."""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from typing import Any

import fuzz_references as ref
import numpy as np
from fuzz_core import Case, UserError, entry, expect
from fuzz_values import (
    chance,
    choice,
    integer,
    pick,
    real,
    relayout,
    seed,
    size,
    spoil,
)

from thrifty import steps
from thrifty.steps._bottleneck_plan import DEFAULT_STAGES

Array = np.ndarray[Any, Any]


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _check_grid(t: Any, nodes: int) -> None:
    expect(isinstance(t, np.ndarray) and t.dtype == np.float64, f"not float64: {type(t)}")
    expect(t.shape == (nodes,), f"shape {t.shape}, expected ({nodes},)")
    expect(np.isfinite(t).all(), f"non-finite times {t[:6]}")
    expect(t[0] == 0.0 and t[-1] == 1.0, f"ends {t[0]}, {t[-1]}")
    expect((np.diff(t) > 0).all(), f"not strictly increasing: {t[:8]}")


@entry("steps.time_grid", fast_calls=80)
def time_grid(rng: np.random.Generator) -> Case:
    n, n_ok, n_label = integer(rng, 1, None, typical=int(pick(rng, (1, 2, 4, 10))), size_like=True)
    kind, kind_ok, kind_label = choice(rng, ("uniform", "edm"))
    kwargs: dict[str, Any] = {}
    valid = _and(n_ok, kind_ok)
    labels = [f"n {n_label}", kind_label]
    if chance(rng, 0.5):
        shift, ok, label = real(rng, 0.0, math.inf, low_open=True, typical=(0.1, 10.0))
        kwargs["shift"] = shift
        valid, labels = _and(valid, ok), [*labels, f"shift {label}"]
    if isinstance(kind, str) and kind == "edm" and chance(rng, 0.6):
        low, ok_low, label_low = real(rng, 0.0, math.inf, low_open=True, typical=(1e-4, 1.0))
        high, ok_high, label_high = real(rng, 0.0, math.inf, low_open=True, typical=(1.0, 200.0))
        rho, ok_rho, label_rho = real(rng, 0.0, math.inf, low_open=True, typical=(0.5, 20.0))
        kwargs.update(sigma_min=low, sigma_max=high, rho=rho)
        ordered = ok_low and ok_high and float(low) < float(high)
        valid = _and(valid, ok_low, ok_high, ok_rho, None if ordered else False)
        labels += [f"sigma_min {label_low}", f"sigma_max {label_high}", f"rho {label_rho}"]
    if valid is not True:
        return Case(steps.time_grid, (n, kind), kwargs, valid, label="; ".join(labels))
    nodes = int(n) + 1

    def check(t: Any) -> None:
        _check_grid(t, nodes)
        if kind == "uniform" and float(kwargs.get("shift", 1.0)) == 1.0:
            expect(np.array_equal(t, np.arange(nodes) / (nodes - 1)), "uniform grid differs")

    # Extreme EDM parameters may squeeze nodes together below float resolution: refusing
    # that is right, returning a grid that is not strictly increasing is not.
    return Case(steps.time_grid, (n, kind), kwargs, None, check, "; ".join(labels))


def _times(rng: np.random.Generator, nodes: int) -> Array:
    kind = int(rng.integers(4))
    if kind == 0:
        return np.linspace(0.0, 1.0, nodes)
    if kind == 1:
        return np.sort(rng.random(nodes))
    if kind == 2:
        t = np.cumsum(rng.random(nodes) + 1e-3)
        return (t - t[0]) / (t[-1] - t[0]) if nodes > 1 else t
    return np.sort(rng.random(nodes)) * pick(rng, (1e-300, 1e300, 1.0))


def _times_input(rng: np.random.Generator, t: Array) -> tuple[Any, bool | None, str]:
    if chance(rng, 0.25):
        bad, ok, label = spoil(rng, t)
        return bad, (False if ok is False else None), label
    value, label = relayout(rng, t.astype(pick(rng, (np.float64, np.float64, np.float32))))
    return value, None, label


@entry("steps.shift_times", fast_calls=60)
def shift_times(rng: np.random.Generator) -> Case:
    t = _times(rng, size(rng, 1, 40))
    shift, shift_ok, shift_label = real(rng, 0.0, math.inf, low_open=True, typical=(0.1, 10.0))
    inside = bool(np.isfinite(t).all() and (t >= 0).all() and (t <= 1).all())
    if chance(rng, 0.2):
        bad, ok, label = spoil(rng, t)
        # The shift is elementwise: an extra axis is as good as none.
        ok = None if label in ("extra axis", "flattened", "scalar for array") else ok
        return Case(steps.shift_times, (bad, shift), valid=_and(ok, None), label=label)
    value, label = relayout(rng, t)
    valid = _and(shift_ok, True if inside else None)
    label = f"times {label}; shift {shift_label}"
    if valid is not True:
        return Case(steps.shift_times, (value, shift), valid=valid, label=label)
    s = float(shift)
    sigma = 1.0 - t
    # SD3's s sigma / (1 + (s - 1) sigma), its denominator as a sum of non-negative terms.
    expected = 1.0 - s * sigma / (s * sigma + (1.0 - sigma))

    def check(out: Any) -> None:
        expect(out.dtype == np.float64 and out.shape == t.shape, f"{out.dtype} {out.shape}")
        expect(np.allclose(out, expected, rtol=1e-12, atol=1e-15), "shifted times differ")
        expect(np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all(), "out of [0, 1]")

    return Case(steps.shift_times, (value, shift), valid=True, check=check, label=label)


@entry("steps.sigmas_from_times", covers=("steps.times_from_sigmas",), fast_calls=60)
def sigmas_and_times(rng: np.random.Generator) -> Case:
    t = _times(rng, size(rng, 0, 40))
    forward = chance(rng, 0.5)
    source = t if forward else 1.0 - t
    value, ok, label = _times_input(rng, source)
    # What the function sees after its own 1 - x: tiny times can merge there.
    seen = t if forward else 1.0 - source
    increasing = (
        seen.size >= 2 and bool((np.diff(seen) > 0).all()) and bool(np.isfinite(seen).all())
    )
    function = steps.sigmas_from_times if forward else steps.times_from_sigmas
    if ok is False:
        return Case(function, (value,), valid=False, label=label)
    # A float32 cast may merge neighbouring times: the case then has no fixed verdict.
    exact = label in ("contiguous", "fortran", "strided view", "negative strides", "read-only")
    valid = (
        increasing
        if ok is None and exact and isinstance(value, np.ndarray) and value.dtype == np.float64
        else None
    )
    if valid is False:
        return Case(function, (value,), valid=False, label=label)

    def check(out: Any) -> None:
        expect(out.dtype == np.float64, f"dtype {out.dtype}")
        back = np.asarray(value.tolist() if hasattr(value, "tolist") else value, dtype=np.float64)
        expect(np.array_equal(out, 1.0 - back), "not 1 - input")
        expect(out.ndim == 1 and out.size >= 2, f"shape {out.shape}")
        times = out if not forward else 1.0 - out
        expect((np.diff(1.0 - back if not forward else back) > 0).all(), "accepted non-increasing")
        del times

    return Case(function, (value,), valid=valid, check=check, label=label)


def _cost(rng: np.random.Generator, nodes: int) -> Array:
    kind = int(rng.integers(5))
    i, j = np.indices((nodes, nodes))
    if kind == 0:
        cost = ((j - i) ** 2).astype(np.float64)
    elif kind == 1:
        cost = np.round(rng.random((nodes, nodes)) * 8)
    elif kind == 2:
        cost = rng.random((nodes, nodes)) * pick(rng, (1.0, 1e300, 1e-300, 1e-310))
    elif kind == 3:
        cost = np.abs(j - i).astype(np.float64) ** float(pick(rng, (0.5, 1.0, 2.0, 3.0)))
    else:
        cost = np.zeros((nodes, nodes))
    return np.asarray(cost)


def _cost_input(rng: np.random.Generator, cost: Array) -> tuple[Any, bool | None, str]:
    if chance(rng, 0.2):
        bad, ok, label = spoil(rng, cost)
        if label == "non-finite entry":
            # Only the strict upper triangle is read.
            ok = bool(np.isfinite(np.triu(bad, 1)).all())
        return bad, (False if ok is False else None), label
    value, label = relayout(rng, cost)
    return value, True, label


def _dp_case(
    rng: np.random.Generator,
) -> tuple[Array, Any, bool | None, str, Any, bool | None, str]:
    nodes = size(rng, 0, 40, (2, 3, 8, 9, 16, 17, 33))
    cost = _cost(rng, nodes)
    value, ok, label = _cost_input(rng, cost)
    k, k_ok, k_label = integer(
        rng, 1, max(nodes - 1, 1), typical=int(rng.integers(1, max(nodes, 2)))
    )
    if nodes < 2:
        ok = False if ok is True else ok
    return cost, value, ok, label, k, k_ok, k_label


def _future_weight(rng: np.random.Generator) -> tuple[dict[str, Any], bool | None, str]:
    if chance(rng, 0.6):
        return {}, True, "w default"
    w, ok, label = real(rng, 0.0, math.inf, low_open=True, typical=(0.25, 2.0))
    if ok and not 1e-100 <= float(w) <= 1e100:
        ok = None  # w**k may overflow the path's cost: NonFiniteError is documented
    return {"future_weight": w}, ok, f"w {label}"


def _check_path(cost: Array, k: int, w: float, path: Any) -> None:
    n = cost.shape[0] - 1
    expect(isinstance(path, np.ndarray) and path.dtype == np.int64, f"path type {type(path)}")
    expect(path.shape == (k + 1,), f"path shape {path.shape}, expected ({k + 1},)")
    expect(path[0] == 0 and path[-1] == n, f"path ends {path[0]}, {path[-1]}")
    expect((np.diff(path) > 0).all(), f"path not increasing {path}")
    best, _ = ref.optimal_path(cost, k, w)
    got = ref.path_cost(cost, path.tolist(), w)
    if math.isnan(got) or math.isnan(best):
        return  # the reference's own sums overflowed (0 * inf)
    expect(
        math.isclose(got, best, rel_tol=1e-9, abs_tol=1e-300)
        or (math.isinf(got) and math.isinf(best)),
        f"path {path.tolist()} costs {got}, optimum {best}",
    )


@entry("steps.optimal_path", fast_calls=80)
def optimal_path(rng: np.random.Generator) -> Case:
    cost, value, ok, label, k, k_ok, k_label = _dp_case(rng)
    kwargs, w_ok, w_label = _future_weight(rng)
    strategy, s_ok, s_label = choice(rng, ("auto", "full", "monge"))
    if chance(rng, 0.7):
        s_ok, s_label = True, "strategy default"
    else:
        kwargs["strategy"] = strategy
    label = f"cost {cost.shape} {label}; k {k_label}; {w_label}; {s_label}"
    valid = _and(ok, k_ok, w_ok, s_ok)
    if isinstance(kwargs.get("strategy"), str) and kwargs["strategy"] == "monge":
        # The reference judges the clean matrix; a stand-in may be Monge or not.
        valid = _and(valid, ref.is_monge(cost) if ok is True else None)
    if valid is not True:
        return Case(steps.optimal_path, (value, k), kwargs, valid, label=label)
    w = float(kwargs.get("future_weight", 1.0))

    def check(path: Any) -> None:
        _check_path(cost, int(k), w, path)
        if w == 1.0 and np.array_equal(cost, np.round(cost)) and (cost < 2**20).all():
            _, expected = ref.optimal_path(cost, int(k), 1.0)
            expect(
                path.tolist() == expected, f"path {path.tolist()} is not the smallest {expected}"
            )

    return Case(steps.optimal_path, (value, k), kwargs, True, check, label)


@entry("steps.optimal_path_cost", fast_calls=50)
def optimal_path_cost(rng: np.random.Generator) -> Case:
    cost, value, ok, label, k, k_ok, k_label = _dp_case(rng)
    kwargs, w_ok, w_label = _future_weight(rng)
    valid = _and(ok, k_ok, w_ok)
    label = f"cost {cost.shape} {label}; k {k_label}; {w_label}"
    if valid is not True:
        return Case(steps.optimal_path_cost, (value, k), kwargs, valid, label=label)
    best, _ = ref.optimal_path(cost, int(k), float(kwargs.get("future_weight", 1.0)))

    def check(total: Any) -> None:
        expect(isinstance(total, float), f"not a float: {type(total)}")
        expect(math.isclose(total, best, rel_tol=1e-9) or total == best, f"{total} vs {best}")

    return Case(steps.optimal_path_cost, (value, k), kwargs, True, check, label)


@entry("steps.optimal_paths", fast_calls=40)
def optimal_paths(rng: np.random.Generator) -> Case:
    cost, value, ok, label, k, k_ok, k_label = _dp_case(rng)
    kwargs, w_ok, w_label = _future_weight(rng)
    valid = _and(ok, k_ok, w_ok)
    label = f"cost {cost.shape} {label}; k_max {k_label}; {w_label}"
    if valid is not True:
        return Case(steps.optimal_paths, (value, k), kwargs, valid, label=label)
    w = float(kwargs.get("future_weight", 1.0))

    def check(paths: Any) -> None:
        expect(sorted(paths) == list(range(1, int(k) + 1)), f"keys {sorted(paths)}")
        for budget, path in paths.items():
            _check_path(cost, budget, w, path)

    return Case(steps.optimal_paths, (value, k), kwargs, True, check, label)


@entry("steps.is_monge", fast_calls=50)
def is_monge(rng: np.random.Generator) -> Case:
    nodes = size(rng, 0, 40, (3, 4, 5, 8, 9, 17))
    cost = _cost(rng, nodes)
    if chance(rng, 0.3):
        cost = cost - 1.0  # negative entries are allowed here
    value, ok, label = _cost_input(rng, cost)
    if ok is not True:
        return Case(steps.is_monge, (value,), valid=ok, label=label)
    expected = ref.is_monge(cost)

    def check(out: Any) -> None:
        expect(out is expected, f"is_monge {out}, reference {expected}")

    # A 0x0 or 1x1 matrix has no jump: refusing it is as right as calling it Monge.
    return Case(
        steps.is_monge, (value,), valid=None if nodes < 2 else True, check=check, label=label
    )


# --- velocities ------------------------------------------------------------------------


def _velocity(rng: np.random.Generator) -> tuple[Any, str, bool]:
    """A velocity field, its description, and whether it behaves (right type and shape)."""
    a, b = float(rng.normal()), float(rng.normal())
    roll = int(rng.integers(12))
    if roll == 0:
        return (lambda x, t: x.reshape(-1)), "wrong shape", False
    if roll == 1:

        def raises(x: Any, t: Any) -> Any:
            raise UserError("the velocity failed")

        return raises, "raises", False
    if roll == 2:
        return (lambda x, t: (x * a).tolist()), "returns a list", False
    if roll == 3:
        return (lambda x, t: x * math.nan), "returns NaN", True
    if roll == 4:
        return "not callable", "not callable", False

    def linear(x: Any, t: Any) -> Any:
        shape = (-1,) + (1,) * (x.ndim - 1)
        return a * x + b * t.reshape(shape)

    return linear, f"linear {a:.3g} x + {b:.3g} t", True


def _noise(rng: np.random.Generator) -> tuple[Any, Array, bool | None, str]:
    """(noise input, its float64 values, valid, label)."""
    batch = size(rng, 1, 6)
    state = tuple(size(rng, 1, 3) for _ in range(int(rng.integers(1, 3))))
    x = rng.standard_normal((batch, *state))
    roll = int(rng.integers(10))
    if roll == 0:
        import torch

        return torch.from_numpy(x.copy()), x, True, "torch noise"
    if roll == 1:
        x32 = x.astype(np.float32)
        return x32, x32.astype(np.float64), True, "float32 noise"
    if roll == 2:
        bad = pick(rng, (x.astype(np.int64), x.astype(complex), x.tolist(), None, x[:0], x[0, 0]))
        return bad, x, False, f"bad noise {type(bad).__name__}"
    return x, x, True, "noise"


def _euler(velocity: Any, x: Array, times: Array, solver: str) -> Array:
    for t0, t1 in itertools.pairwise(times):
        dt = float(t1 - t0)
        v0 = velocity(x, np.full((x.shape[0],), t0, dtype=x.dtype))
        if solver == "euler":
            x = x + dt * v0
        else:
            predicted = x + dt * v0
            v1 = velocity(predicted, np.full((x.shape[0],), t1, dtype=x.dtype))
            x = x + (0.5 * dt) * (v0 + v1)
    return x


@entry("steps.sample", fast_calls=50)
def sample(rng: np.random.Generator) -> Case:
    velocity, v_label, behaves = _velocity(rng)
    noise, values, n_ok, n_label = _noise(rng)
    t = _times(rng, size(rng, 2, 12))
    times, t_ok, t_label = _times_input(rng, t)
    solver, s_ok, s_label = choice(rng, ("euler", "heun"))
    increasing = bool((np.diff(t) > 0).all()) and bool(np.isfinite(t).all())
    valid = _and(n_ok, s_ok, t_ok, bool(increasing), bool(behaves))
    label = f"{v_label}; {n_label}; times {t_label}; {s_label}"
    if valid is not True:
        return Case(steps.sample, (velocity, noise, times), {"solver": solver}, valid, label=label)
    # What thrifty is given (a float32 cast may change the times): the reference runs on it.
    used = np.asarray(times.tolist() if hasattr(times, "tolist") else times, dtype=np.float64)
    if not (np.diff(used) > 0).all():
        return Case(steps.sample, (velocity, noise, times), {"solver": solver}, False, label=label)
    expected = _euler(
        velocity,
        values.astype(noise.dtype) if isinstance(noise, np.ndarray) else values,
        used,
        str(solver),
    )

    def check(out: Any) -> None:
        got = out.numpy() if hasattr(out, "numpy") else out
        expect(tuple(got.shape) == values.shape, f"shape {got.shape}")
        both_nan = np.isnan(got) & np.isnan(expected)
        close = np.isclose(got, expected, rtol=1e-5 if got.dtype == np.float32 else 1e-12)
        expect((close | both_nan).all(), "sample differs from the reference Euler/Heun loop")

    return Case(steps.sample, (velocity, noise, times), {"solver": solver}, True, check, label)


@entry("steps.cost_matrix", fast_calls=40)
def cost_matrix(rng: np.random.Generator) -> Case:
    velocity, v_label, behaves = _velocity(rng)
    noise, values, n_ok, n_label = _noise(rng)
    t = _times(rng, size(rng, 2, 10))
    grid, g_ok, g_label = _times_input(rng, t)
    metric_value, m_ok, m_label = choice(rng, ("l2", "l1"))
    if chance(rng, 0.15):
        metric_value, m_ok, m_label = (
            (lambda p, q: np.sqrt(((p - q) ** 2).reshape(p.shape[0], -1).sum(axis=1))),
            True,
            "callable l2",
        )
    kwargs: dict[str, Any] = {"metric": metric_value, "progress": False}
    if chance(rng, 0.3):
        kwargs["batch_size"], b_ok, b_label = integer(
            rng, 1, None, typical=2, size_like=True, optional=True
        )
    else:
        b_ok, b_label = True, "batch default"
    increasing = bool((np.diff(t) > 0).all()) and bool(np.isfinite(t).all())
    valid = _and(n_ok, g_ok, m_ok, b_ok, bool(increasing), bool(behaves))
    label = f"{v_label}; {n_label}; grid {g_label}; {m_label}; {b_label}"
    if v_label == "returns NaN":
        valid = None
    if valid is not True:
        return Case(steps.cost_matrix, (velocity, grid, noise), kwargs, valid, label=label)
    used = np.asarray(grid.tolist() if hasattr(grid, "tolist") else grid, dtype=np.float64)
    if not (np.diff(used) > 0).all():
        return Case(steps.cost_matrix, (velocity, grid, noise), kwargs, False, label=label)
    x = values.astype(noise.dtype) if isinstance(noise, np.ndarray) else values
    expected = _cost_reference(velocity, x, used, "l1" if m_label == "option 'l1'" else "l2")
    tolerance = 1e-4 if x.dtype == np.float32 else 1e-9

    def check(out: Any) -> None:
        n = used.size
        expect(out.shape == (n, n) and out.dtype == np.float64, f"{out.shape} {out.dtype}")
        expect((np.tril(out) == 0).all(), "not strictly upper triangular")
        scale = max(float(np.abs(expected).max()), 1e-300)
        expect(np.allclose(out, expected, rtol=tolerance, atol=tolerance * scale), "costs differ")

    return Case(steps.cost_matrix, (velocity, grid, noise), kwargs, True, check, label)


def _cost_reference(velocity: Any, x: Array, times: Array, metric: str) -> Array:
    n = times.size - 1
    states, velocities = [x], []
    for i in range(n):
        v = velocity(states[i], np.full((x.shape[0],), times[i], dtype=x.dtype))
        velocities.append(v)
        states.append(states[i] + float(times[i + 1] - times[i]) * v)
    out = np.zeros((n + 1, n + 1))
    for i in range(n):
        for j in range(i + 1, n + 1):
            residual = (
                states[i].astype(np.float64)
                + (times[j] - times[i]) * velocities[i].astype(np.float64)
                - states[j].astype(np.float64)
            ).reshape(x.shape[0], -1)
            if metric == "l1":
                out[i, j] = np.abs(residual).sum(axis=1).mean()
            else:
                out[i, j] = np.sqrt((residual**2).sum(axis=1)).mean()
    return out


@entry("steps.schedule", covers=("steps.Schedule",), fast_calls=12, weight=0.2)
def schedule(rng: np.random.Generator) -> Case:
    flow = steps.GaussianMixtureFlow.ring(modes=int(pick(rng, (2, 4))), radius=1.5, std=0.3)
    n, n_ok, n_label = integer(rng, 1, None, typical=int(pick(rng, (2, 4, 8))), size_like=True)
    n_value = int(n) if n_ok and isinstance(n, (int, np.integer)) and int(n) < 64 else 8
    if not n_ok or not isinstance(n, (int, np.integer)) or int(n) >= 64:
        n_value, n_ok = 8, (n_ok if n_ok is False else None)
    k, k_ok, k_label = integer(rng, 1, n_value, typical=int(rng.integers(1, n_value + 1)))
    method, m_ok, m_label = choice(rng, ("auto", "bellman", "student", "uniform", "edm"))
    samples, s_ok, s_label = integer(rng, 1, None, typical=4, size_like=True)
    if s_ok is not False and isinstance(samples, (int, np.integer)) and int(samples) > 16:
        samples, s_ok = 8, True
    seed_value, seed_ok, seed_label = seed(rng)
    budget, r_ok, r_label = integer(rng, 0, None, typical=3, size_like=True)
    if r_ok is not False and isinstance(budget, (int, np.integer)) and int(budget) > 8:
        budget, r_ok = 4, True
    kwargs: dict[str, Any] = {
        "n": n if n_ok is False else n_value,
        "samples": samples,
        "seed": seed_value,
        "method": method,
        "shape": (2,),
        "refine_budget": budget,
        "refine": bool(rng.integers(2)),
        "progress": False,
    }
    if chance(rng, 0.2):
        kwargs["metric"] = "l1"
    memory_ok: bool | None = True
    memory_label = "default"
    if chance(rng, 0.3):
        # Small budgets split the samples into batches (down to one sample each).
        kwargs["max_memory"], memory_ok, memory_label = integer(
            rng, 1, None, typical=int(pick(rng, (1, 64, 4096, 1 << 20))), size_like=True
        )
    valid = _and(n_ok, k_ok, m_ok, s_ok, seed_ok, r_ok, memory_ok)
    label = (
        f"n {n_label}; k {k_label}; {m_label}; samples {s_label}; seed {seed_label}; "
        f"budget {r_label}; max_memory {memory_label}"
    )
    if valid is not True:
        return Case(steps.schedule, (flow.velocity, k), kwargs, valid, label=label)

    def check(plan: Any) -> None:
        expect(isinstance(plan, steps.Schedule), f"not a Schedule: {type(plan)}")
        _check_grid(plan.times, int(k) + 1)
        expect(plan.k == int(k), f"k {plan.k}")
        expect(plan.indices.shape == (int(k) + 1,), f"indices {plan.indices.shape}")
        expect(math.isfinite(plan.validation_error), f"validation error {plan.validation_error}")
        data = json.loads(json.dumps(plan.to_dict()))
        again = steps.Schedule.from_dict(data)
        expect(np.array_equal(again.times, plan.times), "from_dict(to_dict) changed the times")
        handle, path = tempfile.mkstemp(suffix=".json")
        os.close(handle)
        try:
            plan.save(path)
            loaded = steps.Schedule.load(path)
        finally:
            os.unlink(path)
        expect(np.array_equal(loaded.times, plan.times), "load(save) changed the times")
        expect(np.array_equal(plan.sigmas(), 1.0 - plan.times), "sigmas are not 1 - t")
        if "max_memory" in kwargs:
            # Batching is exact: the same schedule as with every sample in one batch.
            whole = steps.schedule(
                flow.velocity, k, **{key: v for key, v in kwargs.items() if key != "max_memory"}
            )
            expect(np.array_equal(whole.times, plan.times), "max_memory changed the times")
            expect(
                whole.validation_error == plan.validation_error,
                "max_memory changed the validation error",
            )

    return Case(steps.schedule, (flow.velocity, k), kwargs, True, check, label)


@entry("steps.Schedule.from_dict", covers=("steps.Schedule",), fast_calls=40)
def schedule_from_dict(rng: np.random.Generator) -> Case:
    t = _times(rng, size(rng, 0, 8))
    times, _, t_label = _times_input(rng, t)
    data: dict[str, Any] = {"times": times}
    labels = [f"times {t_label}"]
    for key, bad in (
        ("indices", pick(rng, ([0.5], ["a"], [[1, 2], [3]], None, [2**70]))),
        ("cost", pick(rng, ("x", None, [1.0], {}))),
        ("step_errors", pick(rng, (["x"], [[1], [2, 3]], None))),
        ("report", pick(rng, (5, "x", [1, 2], None))),
        ("grid", pick(rng, (["x"], None))),
        ("validation_error", pick(rng, ("x", None))),
    ):
        if chance(rng, 0.15):
            data[key] = bad
            labels.append(f"{key}={bad!r}")
    if chance(rng, 0.1):
        data = pick(rng, ({}, [], "x", None, {"times": None}))  # type: ignore[assignment]
        labels.append(f"data={data!r}")
    return Case(steps.Schedule.from_dict, (data,), valid=None, label="; ".join(labels))


def _pairs_inputs(
    rng: np.random.Generator,
) -> tuple[Any, Any, Any, Any, bool | None, str, Array, Array]:
    velocity, v_label, behaves = _velocity(rng)
    noise, values, n_ok, n_label = _noise(rng)
    n = size(rng, 1, 10)
    grid = np.linspace(0.0, 1.0, n + 1)
    jumps = size(rng, 1, n)
    inner = np.sort(rng.choice(np.arange(1, n), size=jumps - 1, replace=False)) if jumps > 1 else []
    knots = np.concatenate([[0], inner, [n]]).astype(np.int64)
    knots_in: Any = knots
    k_ok: bool | None = True
    k_label = "knots"
    if chance(rng, 0.25):
        knots_in, k_ok, k_label = spoil(rng, knots, kinds="iu")
        if k_ok is None and isinstance(knots_in, np.ndarray):
            k_ok = None
        k_label = "knots " + k_label
    elif chance(rng, 0.2):
        knots_in = steps.Schedule(times=grid[knots], indices=knots)
        k_label = "knots from a Schedule"
    valid = _and(n_ok, k_ok, bool(behaves))
    label = f"{v_label}; {n_label}; {k_label}"
    if v_label == "returns NaN":
        valid = None
    return velocity, noise, grid, knots_in, valid, label, values, knots


@entry("steps.straightening_pairs", covers=("steps.StraighteningPairs",), fast_calls=40)
def straightening_pairs(rng: np.random.Generator) -> Case:
    velocity, noise, grid, knots, valid, label, values, nodes = _pairs_inputs(rng)
    kwargs: dict[str, Any] = {}
    if chance(rng, 0.3):
        kwargs["batch_size"], b_ok, b_label = integer(
            rng, 1, None, typical=2, size_like=True, optional=True
        )
        valid, label = _and(valid, b_ok), f"{label}; batch {b_label}"
    if valid is not True:
        return Case(
            steps.straightening_pairs, (velocity, noise, grid, knots), kwargs, valid, label=label
        )
    x = values.astype(noise.dtype) if isinstance(noise, np.ndarray) else values
    states = [x]
    for i in range(grid.size - 1):
        v = velocity(states[-1], np.full((x.shape[0],), grid[i], dtype=x.dtype))
        states.append(states[-1] + float(grid[i + 1] - grid[i]) * v)
    starts = np.concatenate([states[a] for a in nodes[:-1]])
    targets = np.concatenate(
        [(states[b] - states[a]) / float(grid[b] - grid[a]) for a, b in itertools.pairwise(nodes)]
    )
    tolerance = 1e-5 if x.dtype == np.float32 else 1e-12

    def check(pairs: Any) -> None:
        got_states = pairs.states.numpy() if hasattr(pairs.states, "numpy") else pairs.states
        got_targets = pairs.targets.numpy() if hasattr(pairs.targets, "numpy") else pairs.targets
        expect(len(pairs) == starts.shape[0], f"{len(pairs)} pairs, expected {starts.shape[0]}")
        expect(pairs.jumps == nodes.size - 1, f"jumps {pairs.jumps}")
        expect(np.allclose(got_states, starts, rtol=tolerance, equal_nan=True), "states differ")
        expect(
            np.allclose(got_targets, targets, rtol=tolerance, atol=tolerance, equal_nan=True),
            "targets differ",
        )
        seen = 0
        for batch in pairs.batches(int(rng.integers(1, 5)), shuffle=bool(rng.integers(2)), seed=0):
            seen += int(batch[0].shape[0])
            steps.straightening_loss(velocity, batch)
        expect(seen == len(pairs), f"batches visited {seen} of {len(pairs)} pairs")

    return Case(
        steps.straightening_pairs, (velocity, noise, grid, knots), kwargs, True, check, label
    )


@entry("steps.straightening_loss", fast_calls=50)
def straightening_loss(rng: np.random.Generator) -> Case:
    model, m_label, behaves = _velocity(rng)
    count = size(rng, 1, 6)
    states = rng.standard_normal((count, size(rng, 1, 3)))
    times = rng.random(count)
    targets = rng.standard_normal(states.shape)
    pairs: Any = (states, times, targets)
    p_ok: bool | None = True
    p_label = "pairs"
    roll = int(rng.integers(8))
    if roll == 0:
        pairs, p_ok, p_label = (states, times), False, "two arrays"
    elif roll == 1:
        pairs, p_ok, p_label = (states, times[:-1], targets), False, "short times"
    elif roll == 2:
        pairs, p_ok, p_label = (states, times.tolist(), targets), False, "times as a list"
    elif roll == 3:
        pairs, p_ok, p_label = pick(rng, (None, "abc", 5, [])), False, "not pairs"
    reduction, r_ok, r_label = choice(rng, ("mean", "sum", "none"))
    valid = _and(p_ok, r_ok, bool(behaves))
    label = f"{m_label}; {p_label}; {r_label}"
    if m_label == "returns NaN":
        valid = None
    if valid is not True:
        return Case(
            steps.straightening_loss, (model, pairs), {"reduction": reduction}, valid, label=label
        )
    per_pair = ((model(states, times) - targets) ** 2).reshape(count, -1).sum(axis=1)
    expected = {"mean": per_pair.mean(), "sum": per_pair.sum(), "none": per_pair}[str(reduction)]

    def check(out: Any) -> None:
        expect(np.allclose(out, expected, rtol=1e-12, equal_nan=True), f"{out} vs {expected}")

    return Case(
        steps.straightening_loss, (model, pairs), {"reduction": reduction}, True, check, label
    )


def _stages(rng: np.random.Generator) -> tuple[Any, bool | None, str]:
    roll = int(rng.integers(10))
    if roll < 5:
        count = size(rng, 1, 4)
        scales = [float(pick(rng, (1.0, 0.5, 0.25))) for _ in range(count - 1)] + [1.0]
        raw = rng.random(count) + 0.05
        fractions = (raw / raw.sum()).tolist()
        fractions[-1] = 1.0 - math.fsum(fractions[:-1])
        stages = list(zip(scales, fractions, strict=True))
        return stages, None if fractions[-1] <= 0 else True, f"{count} stages"
    if roll == 5:
        return DEFAULT_STAGES, True, "default stages"
    bad = pick(
        rng,
        (
            [],
            [(1.0,)],
            [(0.5, 1.0)],
            [(1.0, 0.5), (1.0, 0.6)],
            [(math.nan, 1.0)],
            [(1.0, math.inf)],
            [("a", 1.0)],
            [(2.0, 1.0)],
            [(1.0, -1.0), (1.0, 2.0)],
            "stages",
            None,
            5,
            [[1.0, 1.0, 1.0]],
        ),
    )
    return bad, False, f"stages {bad!r}"


@entry(
    "steps.bottleneck_plan", covers=("steps.BottleneckPlan", "steps.BottleneckStage"), fast_calls=60
)
def bottleneck_plan(rng: np.random.Generator) -> Case:
    stages, s_ok, s_label = _stages(rng)
    count = len(stages) if isinstance(stages, (list, tuple)) else 1
    k, k_ok, k_label = integer(
        rng, max(count, 1), None, typical=count + int(rng.integers(0, 12)), size_like=True
    )
    kwargs: dict[str, Any] = {}
    labels = [s_label, f"k {k_label}"]
    valid = _and(s_ok, k_ok)
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and int(k) > 10_000:
        valid = _and(valid, None)
    if chance(rng, 0.3):
        if chance(rng, 0.5):
            kwargs["shift"], ok, label = real(
                rng, 0.0, math.inf, low_open=True, typical=(0.2, 10.0)
            )
            if isinstance(kwargs["shift"], (list, tuple)):
                ok = None  # a sequence of shifts: fine when it has one per stage
        else:
            kwargs["shift"] = [float(rng.uniform(0.2, 10.0)) for _ in range(count)]
            ok, label = True, "shift per stage"
            if chance(rng, 0.3):
                kwargs["shift"] = kwargs["shift"][:-1] or [0.0, 1.0]
                ok, label = False, "shift of the wrong length"
        valid, labels = _and(valid, ok, None), [*labels, f"shift {label}"]
    if chance(rng, 0.3):
        kwargs["renoise"], ok, label = real(rng, 0.0, 1.0, optional=True)
        if isinstance(kwargs["renoise"], (list, tuple)):
            ok = None  # a sequence of strengths: fine when it has one per transition
        if count == 1 and not ok:
            ok = None  # no transition: a sequence of no strengths is as good as none
        valid, labels = _and(valid, ok), [*labels, f"renoise {label}"]
    if valid is False:
        return Case(steps.bottleneck_plan, (k, stages), kwargs, False, label="; ".join(labels))
    total = int(k) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else None

    def check(plan: Any) -> None:
        expect(isinstance(plan, steps.BottleneckPlan), f"not a plan: {type(plan)}")
        expect(plan.k == total, f"k {plan.k}, asked {total}")
        expect(plan.stages[0].times[0] == 0.0 and plan.stages[-1].times[-1] == 1.0, "ends")
        for stage in plan.stages:
            expect((np.diff(stage.times) > 0).all() and np.isfinite(stage.times).all(), "times")
            expect(stage.times[0] >= 0 and stage.times[-1] <= 1, "times outside [0, 1]")
        again = steps.BottleneckPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
        expect(again == plan, "from_dict(to_dict) is not the same plan")
        expect(0 < plan.pixel_fraction <= 1, f"pixel fraction {plan.pixel_fraction}")

    return Case(steps.bottleneck_plan, (k, stages), kwargs, valid, check, "; ".join(labels))


@entry(
    "steps.BottleneckPlan.from_dict",
    covers=("steps.BottleneckPlan", "steps.BottleneckStage"),
    fast_calls=50,
)
def bottleneck_from_dict(rng: np.random.Generator) -> Case:
    plan = steps.bottleneck_plan(int(rng.integers(3, 12)))
    data: Any = json.loads(json.dumps(plan.to_dict()))
    labels = []
    for _ in range(int(rng.integers(0, 3))):
        stages = data["stages"] if isinstance(data["stages"], list) else []
        stage = stages[int(rng.integers(len(stages)))] if stages else None
        key = str(pick(rng, ("scale", "times", "shift", "steps", "k", "stages")))
        bad = pick(rng, (None, "x", [], [0.5], math.nan, -1, 2**70, {}, [[1]], [1.0, 0.5]))
        if key in ("k", "stages") or not isinstance(stage, dict):
            data[key] = bad
        else:
            stage[key] = bad
        labels.append(f"{key}={bad!r}")
    if chance(rng, 0.1):
        data = pick(rng, (None, [], "x", {"stages": [None]}))
        labels.append(f"data={data!r}")
    return Case(
        steps.BottleneckPlan.from_dict,
        (data,),
        valid=None if labels else True,
        label="; ".join(labels) or "round trip",
    )


@entry("steps.BottleneckStage", fast_calls=40)
def bottleneck_stage(rng: np.random.Generator) -> Case:
    scale, s_ok, s_label = real(rng, 0.0, 1.0, low_open=True, typical=(0.1, 1.0))
    t = _times(rng, size(rng, 0, 6))
    times, t_ok, t_label = _times_input(rng, t)
    shift, sh_ok, sh_label = real(rng, 0.0, math.inf, low_open=True, typical=(0.2, 5.0))
    # Times inside [0, 1] may still be refused after a float32 cast merges two of them.
    valid = _and(s_ok, sh_ok, t_ok if t_ok is False else None)
    return Case(
        steps.BottleneckStage,
        (scale, times, shift),
        valid=valid,
        label=f"scale {s_label}; times {t_label}; shift {sh_label}",
    )


@entry("steps.sample_bottleneck", fast_calls=40)
def sample_bottleneck(rng: np.random.Generator) -> Case:
    plan = steps.bottleneck_plan(
        int(rng.integers(3, 10)),
        stages=pick(rng, (((1.0, 1.0),), DEFAULT_STAGES, ((0.5, 0.5), (1.0, 0.5)))),
    )
    side = int(pick(rng, (4, 8, 6, 5)))
    noise: Any = rng.standard_normal((size(rng, 1, 3), size(rng, 1, 3), side, side))
    n_label = f"noise {noise.shape}"
    n_ok: bool | None = None if side in (5, 6) else True
    if chance(rng, 0.2):
        import torch

        noise = torch.from_numpy(noise.astype(np.float32))
        n_label += " torch"
    elif chance(rng, 0.1):
        noise, n_ok, n_label = noise[0], False, "3-D noise"

    def velocity(x: Any, t: Any) -> Any:
        return (1.0 - x) * (1.0 + t[:, None, None, None])

    solver, s_ok, s_label = choice(rng, ("euler", "heun"))
    upsample, u_ok, u_label = choice(rng, ("nearest", "bilinear"))
    seed_value, seed_ok, seed_label = seed(rng)
    kwargs = {"solver": solver, "upsample": upsample, "seed": seed_value, "return_info": True}
    the_plan: Any = plan if chance(rng, 0.9) else pick(rng, (plan.to_dict(), None, "plan"))
    valid = _and(n_ok, s_ok, u_ok, seed_ok, the_plan is plan)
    label = f"{n_label}; {s_label}; {u_label}; seed {seed_label}"
    if valid is False:
        return Case(
            steps.sample_bottleneck, (velocity, noise, the_plan), kwargs, False, label=label
        )

    def check(out: Any) -> None:
        x, info = out
        got = x.numpy() if hasattr(x, "numpy") else x
        expect(tuple(got.shape) == tuple(noise.shape), f"shape {got.shape}")
        evaluations = plan.k * (2 if solver == "heun" else 1)
        expect(info["nfe"] == evaluations, f"nfe {info['nfe']}, expected {evaluations}")
        expect(np.isfinite(got).all(), "non-finite sample")

    return Case(steps.sample_bottleneck, (velocity, noise, the_plan), kwargs, valid, check, label)


@entry("steps.GaussianMixtureFlow", fast_calls=50)
def gaussian_mixture_flow(rng: np.random.Generator) -> Case:
    roll = int(rng.integers(5))
    if roll == 0:
        modes, m_ok, m_label = integer(rng, 1, None, typical=4, size_like=True)
        radius, r_ok, r_label = real(rng, -math.inf, math.inf, typical=(0.0, 3.0))
        std, s_ok, s_label = real(rng, 0.0, math.inf, low_open=True, typical=(0.05, 1.0))
        return Case(
            steps.GaussianMixtureFlow.ring,
            (modes, radius, std),
            valid=_and(m_ok, r_ok, s_ok),
            label=f"ring modes {m_label}; radius {r_label}; std {s_label}",
        )
    count = size(rng, 1, 4)
    dim = size(rng, 1, 3)
    means, stds, weights = (
        rng.standard_normal((count, dim)),
        rng.random(count) + 0.1,
        rng.random(count) + 0.1,
    )
    args: list[Any] = [means, stds, weights]
    labels = []
    valid: bool | None = True
    if chance(rng, 0.3):
        which = int(rng.integers(3))
        args[which], ok, why = spoil(rng, args[which])
        valid, labels = (False if ok is False else None), [f"argument {which} {why}"]
    if labels and labels[0] in (
        "argument 1 extra axis",
        "argument 2 extra axis",
        "argument 1 scalar for array",
        "argument 2 scalar for array",
    ):
        valid = None  # stds and weights are read flat
    if roll == 1 or valid is not True:
        return Case(
            steps.GaussianMixtureFlow,
            tuple(args),
            valid=valid,
            label="; ".join(labels) or "construct",
        )
    flow = steps.GaussianMixtureFlow(*args)
    if roll == 2:
        x = rng.standard_normal((size(rng, 1, 4), dim if chance(rng, 0.8) else dim + 1))
        t = rng.random(x.shape[0])
        ok = x.shape[1] == dim

        def check_velocity(v: Any) -> None:
            expect(v.shape == x.shape and np.isfinite(v).all(), f"velocity {v.shape}")

        return Case(
            flow.velocity, (x, t), valid=ok, check=check_velocity, label=f"velocity x {x.shape}"
        )
    if roll == 3:
        step_count, ok, label = integer(rng, 1, None, typical=3, size_like=True)
        if ok is not False and isinstance(step_count, (int, np.integer)) and int(step_count) > 20:
            step_count, ok = 5, True
        noise = rng.standard_normal((size(rng, 1, 3), dim))

        def check_solve(x: Any) -> None:
            expect(x.shape == noise.shape and np.isfinite(x).all(), f"solve {x.shape}")

        return Case(
            flow.solve, (noise,), {"steps": step_count}, ok, check_solve, f"solve steps {label}"
        )
    count_arg, ok, label = integer(rng, 0, None, typical=4, size_like=True)
    seed_value, seed_ok, seed_label = seed(rng)

    def check_data(x: Any) -> None:
        expect(x.shape == (int(count_arg), dim), f"sample_data shape {x.shape}")

    return Case(
        flow.sample_data,
        (count_arg,),
        {"seed": seed_value},
        _and(ok, seed_ok),
        check_data,
        f"sample_data count {label}; seed {seed_label}",
    )
