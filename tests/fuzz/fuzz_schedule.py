"""Fuzz entries of thrifty.schedule: L-GreCo, the small-gain certificate, batch-size control."""

from __future__ import annotations

import math
from typing import Any

import fuzz_references as ref
import numpy as np
from fuzz_core import Case, Mismatch, entry, expect
from fuzz_values import chance, choice, flag, integer, pick, real, relayout, size, spoil

import thrifty
from thrifty import schedule

Array = np.ndarray[Any, Any]


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


@entry("schedule.lgreco", fast_calls=80, weight=2.0)
def lgreco(rng: np.random.Generator) -> Case:
    layers, levels = size(rng, 1, 4), size(rng, 1, 3)
    integral = chance(rng, 0.5)
    if integral:
        errors: Array = rng.integers(0, 20, size=(layers, levels))
    else:
        errors = rng.random((layers, levels)) * pick(rng, (1.0, 1e-300, 1e300, 1e6))
    sizes = np.round(rng.random((layers, levels)) * 100) * pick(rng, (1.0, 0.5, 1e300))
    least = float(errors.min(axis=1).sum())
    budget_value = float(pick(rng, (least, least * 1.5 + 1, errors.max(axis=1).sum(), least * 0.5)))
    budget: Any = budget_value
    b_ok: bool | None = True
    label = (
        f"({layers}, {levels}) {'int' if integral else 'float'} tables, budget {budget_value:.3g}"
    )
    if chance(rng, 0.15):
        budget, b_ok, b_label = real(rng, 0.0, math.inf)
        label += f"; budget {b_label}"
        budget_value = float(budget) if b_ok else math.nan
    kwargs: dict[str, Any] = {}
    if chance(rng, 0.3) or (not integral and chance(rng, 0.3)):
        kwargs["buckets"], k_ok, k_label = integer(
            rng, 1, None, typical=int(pick(rng, (1, 10, 1000))), size_like=True, optional=True
        )
        b_ok, label = _and(b_ok, k_ok), f"{label}; buckets {k_label}"
    e_in: Any = errors
    s_in: Any = sizes
    if chance(rng, 0.15):
        which = int(rng.integers(2))
        bad, ok, why = spoil(rng, errors if which == 0 else sizes, kinds="fiub")
        if which == 0:
            e_in = bad
        else:
            s_in = bad
        b_ok, label = (
            _and(b_ok, False if ok is False else None),
            f"{label}; {'errors' if which == 0 else 'sizes'} {why}",
        )
    else:
        e_in, how = relayout(rng, errors)
        label += f"; {how}"
    if b_ok is not True:
        return Case(
            schedule.lgreco,
            (e_in, s_in, budget),
            kwargs,
            b_ok,
            label=label,
        )
    buckets = kwargs.get("buckets")
    exact = integral and buckets is None
    optimum = ref.lgreco(errors, sizes, budget_value)
    feasible_rounded = None
    if buckets is not None or not integral:
        units = int(buckets) if buckets is not None else 10_000
        reduced = budget_value - layers * budget_value / units
        feasible_rounded = ref.lgreco(errors, sizes, reduced) if reduced >= 0 else None

    def check(levels_out: Any) -> None:
        expect(levels_out.shape == (layers,) and levels_out.dtype == np.int64, "levels shape")
        expect(((levels_out >= 0) & (levels_out < levels)).all(), "level out of range")
        rows = np.arange(layers)
        error = float(errors[rows, levels_out].sum())
        total = float(sizes[rows, levels_out].sum())
        expect(error <= budget_value * (1 + 1e-12), f"error {error} above budget {budget_value}")
        if exact:
            expect(optimum is not None and total == optimum, f"size {total}, optimum {optimum}")
        elif feasible_rounded is not None:
            expect(total <= feasible_rounded, f"size {total} above {feasible_rounded}")

    # Infeasible budgets, and DP tables too large for the buckets, are refused by name.
    return Case(
        schedule.lgreco,
        (e_in, s_in, budget),
        kwargs,
        None if optimum is None or not exact else True,
        check,
        label,
    )


@entry("schedule.lgreco_tables", fast_calls=30)
def lgreco_tables(rng: np.random.Generator) -> Case:
    import torch

    from thrifty.diloco.compressors import BlockQuantizer, RandomK, TopK

    tensors: list[Any] = [
        torch.from_numpy(rng.standard_normal(size(rng, 1, 70))).float()
        for _ in range(size(rng, 0, 3))
    ]
    candidates: Any = [
        pick(
            rng, (TopK(0.25), RandomK(0.5), BlockQuantizer("int8", block=8), BlockQuantizer("fp4"))
        )
        for _ in range(size(rng, 1, 3))
    ]
    valid: bool | None = True
    label = f"{len(tensors)} tensors, {[c.name for c in candidates]}"
    if chance(rng, 0.2):
        roll = int(rng.integers(4)) if tensors else 0
        if roll == 0:
            candidates, label = (
                pick(rng, ([], None, "topk", [TopK(0.1), "x"])),
                f"{label}; bad candidates",
            )
        elif roll == 1 and tensors:
            tensors[0] = tensors[0].numpy()
            label += "; a numpy tensor"
        elif roll == 2 and tensors:
            tensors[0] = tensors[0].clone()
            tensors[0][0] = math.nan
            label += "; NaN"
        else:
            candidates, label = [TopK(0.5)], f"{label}; one candidate"
            valid = True
        if roll != 3:
            valid = False
    seed = int(rng.integers(0, 100))
    if valid is not True:
        return Case(
            schedule.lgreco_tables, (tensors, candidates), {"seed": seed}, valid, label=label
        )

    def check(out: Any) -> None:
        errors, sizes = out
        expect(errors.shape == (len(tensors), len(candidates)), f"errors {errors.shape}")
        for i, t in enumerate(tensors):
            # Each layer is compressed with its own seed, as the exchange compresses it.
            layer_seed = (seed + (i + 1) * 0x9E3779B97F4A7C15) % 2**64
            for j, c in enumerate(candidates):
                residual = (c.compress(t, seed=layer_seed) - t).double().square().sum()
                expect(math.isclose(errors[i, j], float(residual), rel_tol=1e-12), "error differs")
                expect(sizes[i, j] == c.payload_bytes(t.numel()), "size differs")

    return Case(schedule.lgreco_tables, (tensors, candidates), {"seed": seed}, True, check, label)


@entry("schedule.small_gain_certificate", covers=("schedule.Certificate",), fast_calls=60)
def small_gain_certificate(rng: np.random.Generator) -> Case:
    n = size(rng, 1, 5)
    mu = rng.uniform(0.1, 2.0, size=n)
    if chance(rng, 0.15):
        mu[int(rng.integers(n))] = pick(rng, (0.0, -1.0))
    coupling = rng.random((n, n)) * pick(rng, (0.1, 0.5, 2.0))
    np.fill_diagonal(coupling, 0.0)
    per_block = chance(rng, 0.5)
    floor = np.maximum(mu, 0.0)
    lipschitz: Any = (
        floor + rng.random(n) + 0.1 if per_block else float(floor.max() + rng.random() * 3 + 0.1)
    )
    args: list[Any] = [mu, coupling]
    valid: bool | None = True
    label = f"n {n}, {'per-block' if per_block else 'scalar'} lipschitz"
    if chance(rng, 0.2):
        which = int(rng.integers(3))
        target = args[which] if which < 2 else np.atleast_1d(lipschitz)
        bad, ok, why = spoil(rng, np.asarray(target, dtype=float), kinds="fiu")
        if which < 2:
            args[which] = bad
        else:
            lipschitz = bad
        if which == 2 and why in ("scalar for array", "flattened", "dtype int8", "dtype bool"):
            ok = None  # a scalar bound is as good as a per-block one
        valid, label = (False if ok is False else None), f"{label}; argument {which} {why}"
    elif chance(rng, 0.3):
        args[0], _ = relayout(rng, mu)
        label += "; relaid mu"
    if valid is not True:
        return Case(
            schedule.small_gain_certificate,
            tuple(args),
            {"lipschitz": lipschitz},
            valid,
            label=label,
        )
    steps = rng.random(3) * 2

    def check(c: Any) -> None:
        expect(c.weights.shape == (n,) and np.isfinite(c.weights).all(), "weights")
        expect((c.weights > 0).all() and math.isclose(float(c.weights.max()), 1.0), "weights max")
        if (mu > 0).all():
            gain = float(np.max(np.abs(np.linalg.eigvals(coupling / mu[:, None]))))
            expect(
                math.isclose(c.small_gain, gain, rel_tol=1e-6, abs_tol=1e-9),
                f"small gain {c.small_gain} vs {gain}",
            )
            if gain < 1 - 1e-6:
                expect(c.certified, "small gain below 1 but not certified")
        if c.certified:
            expect(c.margin > 0 and 0 <= c.rate < 1, f"margin {c.margin}, rate {c.rate}")
            comparison = np.diag(mu) - coupling
            w = c.weights
            s = (np.diag(w) @ comparison + comparison.T @ np.diag(w)) / 2
            scaled = s / np.sqrt(np.outer(w, w))
            least = float(np.linalg.eigvalsh(scaled).min())
            expect(
                math.isclose(c.margin, least, rel_tol=1e-6, abs_tol=1e-12),
                f"margin {c.margin} vs {least}",
            )
            expect(c.max_step_euler > 0 and c.max_step_rk4 > 0, "steps")
            for h in steps * c.max_step_euler:
                factor = c.euler_factor(float(h))
                expect(
                    factor >= 0 and (h >= c.max_step_euler or factor < 1 + 1e-12),
                    f"euler factor {factor}",
                )
            for h in steps * c.max_step_rk4:
                factor = c.rk4_factor(float(h))
                expect(
                    factor >= 0 and (h >= c.max_step_rk4 or factor < 1 + 1e-9),
                    f"rk4 factor {factor}",
                )
        else:
            expect(c.reason, "no certificate and no reason")
        bad = pick(rng, (math.nan, -1.0, "x", None, math.inf))
        for method in (c.euler_factor, c.rk4_factor):
            try:
                method(bad)
            except thrifty.InvalidArgumentError:
                pass
            else:
                raise Mismatch(f"{method.__name__}({bad!r}) was accepted")

    return Case(
        schedule.small_gain_certificate, tuple(args), {"lipschitz": lipschitz}, True, check, label
    )


def _grads(rng: np.random.Generator, count: int, numel: int, dtype: Any) -> list[Any]:
    import torch

    base = rng.standard_normal(numel)
    noise = pick(rng, (0.0, 0.1, 1.0, 10.0))
    return [
        torch.from_numpy(base + noise * rng.standard_normal(numel)).to(dtype) for _ in range(count)
    ]


@entry("schedule.AdaptiveBatchSize", fast_calls=50)
def adaptive_batch_size(rng: np.random.Generator) -> Case:
    import torch

    test, t_ok, t_label = choice(rng, ("norm", "inner_product", "augmented"))
    kwargs: dict[str, Any] = {}
    valid: bool | None = t_ok
    labels = [t_label]
    for name in ("eta", "theta", "nu"):
        if chance(rng, 0.3):
            kwargs[name], ok, label = real(rng, 0.0, math.inf, low_open=True, typical=(0.05, 2.0))
            valid, labels = _and(valid, ok), [*labels, f"{name} {label}"]
    low, ok_low, label_low = integer(
        rng, 1, None, typical=int(pick(rng, (1, 4, 32))), size_like=True
    )
    high, ok_high, label_high = integer(
        rng, 1, None, typical=int(pick(rng, (4, 64, 4096))), size_like=True
    )
    kwargs.update(min_batch=low, max_batch=high)
    valid = _and(valid, ok_low, ok_high)
    if ok_low is True and ok_high is True and int(high) < int(low):
        valid = False
    labels += [f"min {label_low}", f"max {label_high}"]
    plan = [
        str(pick(rng, ("update", "update", "accumulate", "state", "hostile")))
        for _ in range(size(rng, 1, 5))
    ]
    seeds = rng.integers(0, 2**32, size=len(plan))
    dtype = pick(rng, (torch.float64, torch.float32))

    def session() -> None:
        controller = schedule.AdaptiveBatchSize(test, **kwargs)
        numel = int(np.random.default_rng(seeds[0]).integers(1, 20))
        previous = controller.batch_size
        for step, action in zip(plan, seeds, strict=True):
            local = np.random.default_rng(action)
            if step == "update":
                count, r = size(local, 2, 5), size(local, 1, 8)
                grads = _grads(local, count, numel, dtype)
                out = controller.update(grads, micro_batch_size=r)
                _check_estimate(controller, grads, r, test, kwargs)
                expect(out == controller.batch_size, "update returned another size")
            elif step == "accumulate":
                model = torch.nn.Linear(numel, 1, bias=False).to(dtype)
                for _ in range(size(local, 2, 4)):
                    model(
                        torch.from_numpy(local.standard_normal((3, numel))).to(dtype)
                    ).sum().backward()
                    controller.accumulate(model, micro_batch_size=3)
                controller.update()
            elif step == "state":
                state = controller.state_dict()
                other = schedule.AdaptiveBatchSize(test, **kwargs)
                other.load_state_dict(state)
                expect(other.batch_size == controller.batch_size, "state lost the batch size")
            else:
                _hostile_update(local, controller, numel)
            expect(
                controller.min_batch <= controller.batch_size <= controller.max_batch,
                "batch size out of bounds",
            )
            expect(controller.batch_size >= previous, "batch size went down")
            previous = controller.batch_size

    return Case(session, valid=valid, label="; ".join(labels) + f"; {plan}")


def _check_estimate(
    controller: Any, grads: list[Any], r: int, test: str, kwargs: dict[str, Any]
) -> None:
    if test != "norm":
        return
    flats = np.stack([g.double().numpy() for g in grads])
    mean = flats.mean(axis=0)
    mean_square = float(mean @ mean)
    squares = float(((flats - mean) ** 2).sum())
    eta = float(kwargs.get("eta", 0.1))
    if not 1e-100 < eta < 1e100:
        return  # eta**2 leaves float64: only the finiteness rules of update apply
    variance = (r / (len(grads) - 1)) * squares
    expected = math.inf if mean_square == 0 else variance / (eta * eta * mean_square)
    got = controller.last_estimate
    # float32 gradients are averaged in float32: their round-off is a variance of its own.
    slack = (
        1e-4
        * (r / (len(grads) - 1))
        * float((flats**2).sum())
        / (eta * eta * max(mean_square, 1e-300))
    )
    expect(
        got == expected or abs(got - expected) <= 1e-4 * abs(expected) + slack,
        f"norm-test estimate {got}, expected {expected}",
    )


def _hostile_update(rng: np.random.Generator, controller: Any, numel: int) -> None:
    import torch

    before = controller.state_dict()
    calls = [
        lambda: controller.update(_grads(rng, 1, numel, torch.float64), micro_batch_size=2),
        lambda: controller.update(_grads(rng, 3, numel, torch.float64)),
        lambda: controller.update(_grads(rng, 3, numel, torch.float64), micro_batch_size=0),
        lambda: controller.update([torch.ones(numel), torch.ones(numel + 1)], micro_batch_size=2),
        lambda: controller.update([torch.full((numel,), math.nan)] * 2, micro_batch_size=2),
        lambda: controller.update([np.ones(numel)] * 2, micro_batch_size=2),
        lambda: controller.update("grads", micro_batch_size=2),
        lambda: controller.update([torch.ones(numel, dtype=torch.int64)] * 2, micro_batch_size=2),
        lambda: controller.update(),
        lambda: controller.load_state_dict({"batch_size": "x"}),
        lambda: controller.load_state_dict(
            {"batch_size": 0, "steps": 0, "last_estimate": 0.0, "direction": None}
        ),
        lambda: controller.accumulate(torch.nn.Linear(1, 1), micro_batch_size=-1),
    ]
    chosen = int(rng.integers(len(calls)))
    try:
        calls[chosen]()
    except thrifty.ThriftyError as error:
        expect(not isinstance(error, thrifty.InternalError), f"InternalError: {error}")
    else:
        raise Mismatch(f"hostile update {chosen} was accepted")
    expect(
        controller.state_dict()["batch_size"] == before["batch_size"],
        "a refused call changed the size",
    )


@entry("schedule.AdaptiveBatchSampler", fast_calls=50)
def adaptive_batch_sampler(rng: np.random.Generator) -> Case:
    n = size(rng, 0, 40)
    indices = [int(i) for i in rng.permutation(n)]
    replicas, r_ok, r_label = integer(rng, 1, None, typical=int(rng.integers(1, 4)), size_like=True)
    drop_last, d_ok, d_label = flag(rng)
    sizes = [int(s) for s in rng.integers(1, 9, size=n + 2)]
    bad_size = None
    if chance(rng, 0.15):
        bad_size = pick(rng, (0, -1, 2.5, True, "4", None))
    valid = _and(r_ok, None if d_ok is not True else True)
    label = f"{n} indices; replicas {r_label}; drop_last {d_label}; bad size {bad_size!r}"

    class Controller:
        def __init__(self) -> None:
            self.calls = 0

        @property
        def batch_size(self) -> Any:
            self.calls += 1
            if bad_size is not None and self.calls > 2:
                return bad_size
            return sizes[min(self.calls // 3, len(sizes) - 1)]

    sampler: Any = indices
    if chance(rng, 0.1):
        sampler, valid, label = pick(rng, (5, None, 1.5)), False, f"{label}; sampler not iterable"

    def session() -> None:
        batches = schedule.AdaptiveBatchSampler(
            sampler, Controller(), num_replicas=replicas, drop_last=drop_last
        )
        out = list(batches)
        flat = [i for b in out for i in b]
        if not drop_last:
            expect(flat == indices, "batches do not cover the sampler in order")
        else:
            expect(flat == indices[: len(flat)], "batches are not a prefix of the sampler")
        expect(all(len(b) >= 1 for b in out), "an empty batch")
        state = batches.state_dict()
        expect(state == {"consumed": len(flat)}, f"state {state}, handed out {len(flat)}")
        resumed = schedule.AdaptiveBatchSampler(indices, Controller(), num_replicas=replicas)
        resumed.load_state_dict({"consumed": len(flat) // 2})
        rest = [i for b in resumed for i in b]
        expect(rest == indices[len(flat) // 2 :], "a resumed epoch does not skip what was consumed")

    return Case(session, valid=None if bad_size is not None else valid, label=label)
