"""Fuzz entries of thrifty.coreset: scores, sampling, coresets, regression and samplers."""

from __future__ import annotations

import math
from typing import Any

import fuzz_references as ref
import numpy as np
from fuzz_core import Case, entry, expect
from fuzz_values import chance, choice, flag, integer, pick, real, relayout, seed, size, spoil

from thrifty import coreset

Array = np.ndarray[Any, Any]

# Row blocks of the QR (8192), chunks of the scores and sketches (4096, 16384).
ROW_BOUNDARIES = (1, 2, 3, 4, 8, 64, 4095, 4096, 4097, 8191, 8192, 8193)


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _matrix(rng: np.random.Generator) -> tuple[Array, bool | None, str]:
    """A tall matrix: full rank (True), or rank-deficient or too wide (None: may be refused)."""
    d = size(rng, 1, 5)
    n = size(rng, d, 60, [b for b in ROW_BOUNDARIES if b >= d] if chance(rng, 0.1) else ())
    roll = int(rng.integers(10))
    a = rng.standard_normal((n, d))
    if roll == 0:
        a = a * pick(rng, (1e150, 1e-150, 1e-300))
        return a, None, "scaled matrix"
    if roll == 1 and d > 1:
        a[:, -1] = a[:, 0]
        return a, None, "rank-deficient matrix"
    if roll == 2:
        a = rng.standard_normal((max(d - 1, 0), d))
        return a, None, "wide matrix"
    if roll == 3:
        a = a * np.logspace(0, 6, d)[None, :]
        return a, None, "badly scaled columns"
    return a, True, f"({n}, {d}) matrix"


SPOILED = "spoiled: "


def _matrix_input(
    rng: np.random.Generator, a: Array, ok: bool | None
) -> tuple[Any, bool | None, str]:
    """``a`` as given to the call; a label starting with :data:`SPOILED` marks other values."""
    if chance(rng, 0.12):
        bad, valid, label = spoil(rng, a)
        return bad, (False if valid is False else None), SPOILED + label
    if chance(rng, 0.2):
        return a.astype(np.float32), None, "float32"
    value, label = relayout(rng, a)
    return value, ok, label


@entry("coreset.leverage_scores", fast_calls=50)
def leverage_scores(rng: np.random.Generator) -> Case:
    a, ok, label = _matrix(rng)
    value, valid, how = _matrix_input(rng, a, ok)
    kwargs: dict[str, Any] = {}
    method, m_ok, m_label = choice(rng, ("qr", "sketch"))
    if chance(rng, 0.5):
        kwargs["method"] = method
        valid = _and(valid, m_ok)
    if chance(rng, 0.3):
        kwargs["eps"], e_ok, e_label = real(
            rng, 0.0, 1.0, low_open=True, high_open=True, typical=(0.1, 0.9)
        )
        # eps only matters for the sketch; a bad one may pass unnoticed by "qr".
        valid = _and(valid, e_ok)
        label += f"; eps {e_label}"
    if chance(rng, 0.2):
        kwargs["seed"], s_ok, _s_label = seed(rng)
        valid = _and(valid, s_ok)
    label = f"{label} {how}; {m_label if 'method' in kwargs else 'qr default'}"
    if valid is False or SPOILED in how or (valid is None and ok is not True):
        return Case(coreset.leverage_scores, (value,), kwargs, valid, label=label)
    exact = kwargs.get("method", "qr") == "qr"
    expected = ref.leverage_scores(a / np.linalg.norm(a, axis=0)) if ok is True else None

    def check(out: Any) -> None:
        expect(out.shape == (a.shape[0],) and out.dtype == np.float64, f"{out.shape} {out.dtype}")
        expect(np.isfinite(out).all() and (out >= 0).all(), "scores not finite and >= 0")
        if (
            exact
            and expected is not None
            and isinstance(value, np.ndarray)
            and value.dtype == np.float64
        ):
            expect(np.allclose(out, expected, atol=1e-8), "qr scores differ from numpy's QR")

    return Case(coreset.leverage_scores, (value,), kwargs, valid, check, label)


@entry("coreset.root_leverage_scores", fast_calls=30)
def root_leverage_scores(rng: np.random.Generator) -> Case:
    a, ok, label = _matrix(rng)
    value, valid, how = _matrix_input(rng, a, ok)
    if valid is not True:
        return Case(coreset.root_leverage_scores, (value,), valid=valid, label=f"{label} {how}")
    expected = np.sqrt(ref.leverage_scores(a / np.linalg.norm(a, axis=0)))

    def check(out: Any) -> None:
        expect(np.allclose(out, expected, atol=1e-8), "root scores differ")

    return Case(
        coreset.root_leverage_scores, (value,), valid=True, check=check, label=f"{label} {how}"
    )


def _lewis_residual(a: Array, w: Array, p: float) -> float:
    scaled = a * (w ** (0.5 - 1.0 / p))[:, None]
    tau = ref.leverage_scores(scaled)
    fixed = (tau / w ** (1.0 - 2.0 / p)) ** (p / 2.0)
    return float(np.max(np.abs(w - fixed) / np.maximum(w, 1e-300)))


@entry("coreset.lewis_weights", fast_calls=40)
def lewis_weights(rng: np.random.Generator) -> Case:
    a, ok, label = _matrix(rng)
    value, valid, how = _matrix_input(rng, a, ok)
    p, p_ok, p_label = real(rng, 0.0, math.inf, low_open=True, typical=(0.5, 6.0))
    kwargs: dict[str, Any] = {}
    if chance(rng, 0.3):
        kwargs["iters"], i_ok, i_label = integer(rng, 1, None, typical=200, size_like=True)
        valid, label = _and(valid, i_ok), f"{label}; iters {i_label}"
    if chance(rng, 0.3):
        kwargs["tol"], t_ok, t_label = real(rng, 0.0, math.inf, low_open=True, typical=(1e-8, 1e-3))
        valid, label = _and(valid, t_ok), f"{label}; tol {t_label}"
    valid = _and(valid, p_ok)
    label = f"{label} {how}; p {p_label}"
    if valid is not True:
        return Case(coreset.lewis_weights, (value, p), kwargs, valid, label=label)
    tol = float(kwargs.get("tol", 1e-6))
    d = a.shape[1]

    def check(w: Any) -> None:
        expect(w.shape == (a.shape[0],) and np.isfinite(w).all(), f"weights {w.shape}")
        expect((w >= 0).all() and (w <= 1 + 1e-9).all(), "weights outside [0, 1]")
        expect(abs(w.sum() - d) <= max(1e-6, 10 * tol) * d, f"weights sum {w.sum()}, not d = {d}")
        if 1e-2 <= float(p) <= 1e2:  # beyond, the reference's own powers overflow
            residual = _lewis_residual(a, w, float(p))
            expect(residual <= max(50 * tol, 1e-7), f"fixed-point residual {residual} > tol {tol}")

    # A hard matrix may not converge within iters: refusing it, by name, is documented.
    return Case(coreset.lewis_weights, (value, p), kwargs, None, check, label)


@entry("coreset.lp_sensitivities", fast_calls=30)
def lp_sensitivities(rng: np.random.Generator) -> Case:
    a, ok, label = _matrix(rng)
    value, valid, how = _matrix_input(rng, a, ok)
    p, p_ok, p_label = real(rng, 0.0, math.inf, low_open=True, typical=(0.5, 4.0))
    valid = _and(valid, p_ok)
    label = f"{label} {how}; p {p_label}"
    if valid is not True:
        return Case(coreset.lp_sensitivities, (value, p), valid=valid, label=label)
    directions = rng.standard_normal((a.shape[1], 8))

    def check(s: Any) -> None:
        expect(s.shape == (a.shape[0],) and np.isfinite(s).all(), f"sensitivities {s.shape}")
        expect((s >= 0).all() and (s <= 1 + 1e-12).all(), "sensitivities outside [0, 1]")
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            values = np.abs(a @ directions) ** float(p)
            shares = values / values.sum(axis=0, keepdims=True)
        columns = np.isfinite(shares).all(axis=0)  # the reference overflows at extreme p
        worst = float(np.max(shares[:, columns] - s[:, None] * (1 + 1e-7), initial=0.0))
        expect(worst <= 1e-12, f"a row's share exceeds its bound by {worst}")

    return Case(coreset.lp_sensitivities, (value, p), valid=None, check=check, label=label)


def _points(rng: np.random.Generator) -> tuple[Array, str]:
    n = size(rng, 1, 80, (1, 2, 4095, 4096, 4097) if chance(rng, 0.05) else ())
    d = size(rng, 1, 4)
    x = rng.standard_normal((n, d))
    if chance(rng, 0.2):
        x = np.round(x)  # duplicates
    if chance(rng, 0.1):
        x = x * pick(rng, (1e150, 1e-150))
    return x, f"({n}, {d}) points"


@entry("coreset.kmeans_sensitivities", fast_calls=40)
def kmeans_sensitivities(rng: np.random.Generator) -> Case:
    x, label = _points(rng)
    value, valid, how = _matrix_input(rng, x, True)
    k, k_ok, k_label = integer(rng, 1, x.shape[0], typical=int(rng.integers(1, x.shape[0] + 1)))
    s, s_ok, s_label = seed(rng)
    valid = _and(valid, k_ok, s_ok)
    label = f"{label} {how}; k {k_label}; seed {s_label}"
    if valid is not True:
        return Case(coreset.kmeans_sensitivities, (value, k), {"seed": s}, valid, label=label)
    n = x.shape[0]
    alpha = 16 * (math.log2(int(k)) + 2)

    def check(out: Any) -> None:
        expect(out.shape == (n,) and np.isfinite(out).all() and (out > 0).all(), "scores")
        total = n * (3 * alpha + 4 * int(k))
        # With all points on the seeds (c = 0) the distance terms vanish: at most the total.
        expect(out.sum() <= total * (1 + 1e-9), f"scores sum {out.sum()} above {total}")

    return Case(coreset.kmeans_sensitivities, (value, k), {"seed": s}, True, check, label)


def _scores(rng: np.random.Generator) -> tuple[Array, str]:
    n = size(rng, 1, 200, (64, 65, 255, 256, 257, 4096, 4097) if chance(rng, 0.1) else ())
    if chance(rng, 0.02):
        n = int(pick(rng, (65535, 65536, 65537)))
    roll = int(rng.integers(6))
    if roll == 0:
        scores = np.zeros(n)
        scores[rng.integers(n)] = 1.0
        return scores, "one positive score"
    if roll == 1:
        return rng.random(n) * pick(rng, (1e300, 1e-300, 5e-324)), "extreme scores"
    if roll == 2:
        scores = rng.random(n)
        scores[rng.random(n) < 0.5] = 0.0
        return scores, "half zero"
    return rng.random(n) + 0.01, "positive scores"


@entry("coreset.sample", fast_calls=80, weight=2.0)
def sample(rng: np.random.Generator) -> Case:
    scores, label = _scores(rng)
    positive = int(np.count_nonzero(scores))
    replace, r_ok, r_label = flag(rng)
    m, m_ok, m_label = integer(
        rng, 0, None, typical=int(rng.integers(0, max(positive, 1) + 3)), size_like=True
    )
    s, s_ok, s_label = seed(rng)
    value: Any = scores
    v_ok: bool | None = True if positive and np.isfinite(scores.sum()) else None
    how = "scores"
    if chance(rng, 0.15):
        value, bad_ok, how = spoil(rng, scores, kinds="fiu")
        v_ok = False if bad_ok is False else None
    elif chance(rng, 0.3):
        value, how = relayout(rng, scores)
    valid = _and(v_ok, m_ok, s_ok, None if r_ok is not True else True)
    if r_ok is True and not replace and m_ok is True and int(m) > positive and v_ok is True:
        valid = _and(valid, False)
    positives = scores[scores > 0]
    # Only for the drawn scores: a spoiled copy (rescaled, cast) has other magnitudes.
    tiny = v_ok is True and positives.size and positives.min() < 2**-1018
    if r_ok is True and not replace and tiny:
        valid = _and(valid, False)  # documented: their exponential ranks would overflow
    label = f"{label} {how}; m {m_label}; replace {r_label}; seed {s_label}"
    kwargs = {"replace": replace, "seed": s}
    if valid is not True:
        return Case(coreset.sample, (value, m), kwargs, valid, label=label)
    draws = int(m)
    p = scores / scores.sum()

    def check(out: Any) -> None:
        indices, weights = out
        expect(indices.shape == (draws,) and weights.shape == (draws,), "shapes")
        expect(indices.dtype == np.int64 and weights.dtype == np.float64, "dtypes")
        if draws == 0:
            return
        expect((indices >= 0).all() and (indices < scores.size).all(), "index out of range")
        expect((scores[indices] > 0).all(), "a zero score was drawn")
        expect(np.isfinite(weights).all() and (weights > 0).all(), "weights not finite > 0")
        if replace:
            expected = 1.0 / (draws * p[indices])
            expect(np.allclose(weights, expected, rtol=1e-9), "weights are not 1 / (m p_i)")
        else:
            expect(np.unique(indices).size == draws, "repeated index without replacement")
            expect((weights >= 1 - 1e-12).all(), "inclusion weight below 1")

    return Case(coreset.sample, (value, m), kwargs, True, check, label)


def _check_coreset(c: Any, n: int, m: int) -> None:
    expect(isinstance(c, coreset.Coreset), f"not a Coreset: {type(c)}")
    expect(len(c) == m, f"{len(c)} rows, asked {m}")
    expect(((c.indices >= 0) & (c.indices < n)).all(), "index out of range")
    expect(np.isfinite(c.weights).all() and (c.weights > 0).all(), "weights not finite > 0")


METHODS = ("lewis", "leverage", "root_leverage", "sensitivity", "uniform")


@entry("coreset.subspace_embedding", fast_calls=40)
def subspace_embedding(rng: np.random.Generator) -> Case:
    a, ok, label = _matrix(rng)
    value, valid, how = _matrix_input(rng, a, ok)
    p, p_ok, p_label = real(rng, 0.0, math.inf, low_open=True, typical=(0.5, 4.0))
    m, m_ok, m_label = integer(rng, 1, None, typical=int(rng.integers(1, 50)), size_like=True)
    method, me_ok, me_label = choice(rng, METHODS)
    s, s_ok, _s_label = seed(rng)
    replace, r_ok, r_label = flag(rng)
    valid = _and(valid, p_ok, m_ok, me_ok, s_ok, None if r_ok is not True else True)
    label = f"{label} {how}; p {p_label}; m {m_label}; {me_label}; replace {r_label}"
    kwargs = {"method": method, "seed": s, "replace": replace}
    if valid is not True or not replace:
        return Case(
            coreset.subspace_embedding,
            (value, p, m),
            kwargs,
            None if valid is not False else False,
            label=label,
        )

    def check(c: Any) -> None:
        _check_coreset(c, a.shape[0], int(m))
        distortion = c.distortion(a, rng.standard_normal(a.shape[1]))
        extreme = not 1e-3 <= float(p) <= 1e3  # the ratio ** (1 / p) may overflow, rightly
        expect(
            distortion >= 0 and (extreme or math.isfinite(distortion)), f"distortion {distortion}"
        )

    return Case(
        coreset.subspace_embedding,
        (value, p, m),
        kwargs,
        None,
        None if SPOILED in label else check,
        label,
    )


def _target(rng: np.random.Generator, a: Array) -> Array:
    x = rng.standard_normal(a.shape[1])
    return np.asarray(a @ x + rng.laplace(size=a.shape[0]) * pick(rng, (0.0, 0.1, 1.0)))


@entry("coreset.lp_regression", fast_calls=40)
def lp_regression(rng: np.random.Generator) -> Case:
    a, ok, label = _matrix(rng)
    b = _target(rng, a)
    value, valid, how = _matrix_input(rng, a, ok)
    # Past p = 256, |r|^p leaves the float64 range: such a p is refused by name.
    p, p_ok, p_label = real(rng, 1.0, 256.0, typical=(1.0, 4.0))
    kwargs: dict[str, Any] = {}
    b_in: Any = b
    if chance(rng, 0.1):
        b_in, b_ok, b_label = spoil(rng, b, kinds="fiu")
        # A scalar becomes shape (1,): a fine b for one row.
        b_ok = None if b_label == "scalar for array" and a.shape[0] == 1 else b_ok
        valid, label = _and(valid, False if b_ok is False else None), f"{label}; b {b_label}"
    if chance(rng, 0.3):
        weights = rng.random(a.shape[0]) + 0.1
        kwargs["weights"] = weights
        if chance(rng, 0.3):
            kwargs["weights"], w_ok, w_label = spoil(rng, weights, kinds="fiu")
            w_ok = True if kwargs["weights"] is None else w_ok  # None is the default
            valid, label = (
                _and(valid, False if w_ok is False else None),
                f"{label}; weights {w_label}",
            )
    valid = _and(valid, p_ok)
    label = f"{label} {how}; p {p_label}"
    if valid is not True:
        return Case(coreset.lp_regression, (value, b_in, p), kwargs, valid, label=label)
    w = np.asarray(kwargs.get("weights", np.ones(a.shape[0])))
    power = float(p)
    start = np.linalg.lstsq(a * np.sqrt(w)[:, None], b * np.sqrt(w), rcond=None)[0]

    def cost(x: Array) -> float:
        return float(w @ np.abs(a @ x - b) ** power)

    def check(x: Any) -> None:
        expect(x.shape == (a.shape[1],) and np.isfinite(x).all(), f"solution {x.shape}")
        ours, least_squares = cost(x), cost(start)
        expect(
            ours <= least_squares * (1 + 1e-6) + 1e-12, f"cost {ours} above LS's {least_squares}"
        )

    return Case(coreset.lp_regression, (value, b_in, p), kwargs, True, check, label)


@entry("coreset.regression", covers=("coreset.RegressionResult",), fast_calls=30)
def regression(rng: np.random.Generator) -> Case:
    a, ok, label = _matrix(rng)
    b = _target(rng, a)
    value, valid, how = _matrix_input(rng, a, ok)
    p, p_ok, p_label = real(rng, 1.0, math.inf, typical=(1.0, 3.0))
    m, m_ok, m_label = integer(
        rng, 1, None, typical=int(rng.integers(a.shape[1] + 1, 60)), size_like=True
    )
    method, me_ok, me_label = choice(rng, METHODS)
    valid = _and(valid, p_ok, m_ok, me_ok)
    label = f"{label} {how}; p {p_label}; m {m_label}; {me_label}"
    kwargs = {"method": method, "seed": int(rng.integers(0, 100))}

    def check(out: Any) -> None:
        x, c = out
        expect(x.shape == (a.shape[1],) and np.isfinite(x).all(), f"solution {x.shape}")
        _check_coreset(c, a.shape[0], int(m))

    # A small coreset may be rank-deficient: refusing it by name is right.
    checked = None if SPOILED in label else check
    return Case(
        coreset.regression,
        (value, b, p, m),
        kwargs,
        None if valid is not False else False,
        checked,
        label,
    )


@entry("coreset.kmeans", fast_calls=30)
def kmeans(rng: np.random.Generator) -> Case:
    x, label = _points(rng)
    value, valid, how = _matrix_input(rng, x, True)
    k, k_ok, k_label = integer(rng, 1, x.shape[0], typical=int(rng.integers(1, x.shape[0] + 1)))
    m, m_ok, m_label = integer(rng, 1, None, typical=int(rng.integers(1, 40)), size_like=True)
    valid = _and(valid, k_ok, m_ok)
    label = f"{label} {how}; k {k_label}; m {m_label}"
    if valid is not True:
        return Case(coreset.kmeans, (value, k, m), valid=valid, label=label)

    def check(c: Any) -> None:
        _check_coreset(c, x.shape[0], int(m))
        estimate = coreset.kmeans_cost(x, x[: int(k)], coreset=c)
        expect(math.isfinite(estimate) and estimate >= 0, f"coreset cost {estimate}")

    return Case(coreset.kmeans, (value, k, m), valid=True, check=check, label=label)


@entry("coreset.kmeans_cost", fast_calls=40)
def kmeans_cost(rng: np.random.Generator) -> Case:
    x, label = _points(rng)
    centers = rng.standard_normal(
        (size(rng, 0, 5), x.shape[1] if chance(rng, 0.9) else x.shape[1] + 1)
    )
    value, valid, how = _matrix_input(rng, x, True)
    valid = _and(
        valid,
        None if SPOILED in how else centers.shape[1] == x.shape[1],
        None if centers.shape[0] else False,
    )
    label = f"{label} {how}; centers {centers.shape}"
    if valid is not True:
        return Case(coreset.kmeans_cost, (value, centers), valid=valid, label=label)
    distances = ((x[:, None, :] - centers[None]) ** 2).sum(axis=2).min(axis=1)
    expected = float(distances.sum())
    scale = float((x**2).sum() + x.shape[0] * (centers**2).sum(axis=1).max())

    def check(out: Any) -> None:
        expect(abs(out - expected) <= 1e-9 * scale + 1e-300, f"cost {out} vs {expected}")

    return Case(coreset.kmeans_cost, (value, centers), valid=True, check=check, label=label)


@entry("coreset.Coreset", fast_calls=40)
def coreset_type(rng: np.random.Generator) -> Case:
    a, _, label = _matrix(rng)
    n, d = a.shape
    m = size(rng, 0, 10)
    indices: Any = rng.integers(0, max(n, 1), size=m)
    weights: Any = rng.random(m) + 0.1
    p = float(pick(rng, (1.0, 2.0, 3.0, 0.5)))
    valid: bool | None = n > 0
    if chance(rng, 0.3):
        roll = int(rng.integers(5))
        if roll == 0:
            indices, label = indices + n, f"{label}; indices past the rows"
        elif roll == 1:
            indices, label = indices.astype(np.float64) + 0.5, f"{label}; fractional indices"
        elif roll == 2:
            indices, label = np.array([math.nan] * m), f"{label}; NaN indices"
        elif roll == 3:
            weights, label = (
                weights[:-1] if m else np.ones(1),
                f"{label}; weights of another length",
            )
        else:
            indices, label = -indices - 1, f"{label}; negative indices"
        valid = False if m else None
    if n == 0:
        valid = None
    xs = rng.standard_normal((d, size(rng, 1, 3)))

    def session() -> Any:
        c = coreset.Coreset(indices, weights, p=p)
        norms = c.norms(a, xs)
        expect(norms.shape == (xs.shape[1],), f"norms {norms.shape}")
        distortion = c.distortion(a, xs)
        expect(math.isfinite(distortion) or not np.isfinite(a).all(), f"distortion {distortion}")
        if valid:
            with np.errstate(over="ignore", under="ignore"):
                sampled = np.abs(a[c.indices] @ xs) ** p
                expected = (c.weights @ sampled) ** (1 / p)
            # The reference overflows where thrifty's scaled sum does not: compare the rest.
            kept = np.isfinite(expected) & (expected > 1e-250)
            expect(np.allclose(norms[kept], expected[kept], rtol=1e-9), "norms differ")
        return c

    return Case(session, valid=valid, label=label)


def _sampler_args(rng: np.random.Generator) -> tuple[dict[str, Any], bool | None, str]:
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    labels = []
    replicas, ok, label = integer(rng, 1, None, typical=int(rng.integers(1, 4)), size_like=True)
    kwargs["num_replicas"], valid, labels = replicas, _and(valid, ok), [f"replicas {label}"]
    top = int(replicas) - 1 if ok is True else 0
    rank, rank_ok, label = integer(
        rng, 0, max(top, 0), typical=int(rng.integers(0, max(top, 0) + 1))
    )
    if ok is not True and rank_ok is False:
        rank_ok = None  # the range of ranks depends on the (hostile) replicas
    kwargs["rank"], valid, labels = rank, _and(valid, rank_ok), [*labels, f"rank {label}"]
    kwargs["seed"], ok, label = seed(rng)
    valid, labels = _and(valid, ok), [*labels, f"seed {label}"]
    return kwargs, valid, "; ".join(labels)


@entry("coreset.RS2Sampler", fast_calls=40)
def rs2_sampler(rng: np.random.Generator) -> Case:
    n, n_ok, n_label = integer(rng, 1, None, typical=int(rng.integers(1, 60)), size_like=True)
    fraction, f_ok, f_label = real(rng, 0.0, 1.0, low_open=True, typical=(0.01, 1.0))
    kwargs, valid, label = _sampler_args(rng)
    kwargs["drop_last"] = bool(rng.integers(2))
    valid = _and(valid, n_ok, f_ok)
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and int(n) > 100_000:
        valid = _and(valid, None)
    if valid is True:
        wanted = math.ceil(float(fraction) * int(n))
        replicas = int(kwargs["num_replicas"])
        rounded = (
            wanted // replicas * replicas
            if kwargs["drop_last"]
            else -(-wanted // replicas) * replicas
        )
        valid = 0 < rounded <= int(n)
    label = f"n {n_label}; fraction {f_label}; {label}"
    epochs = [int(e) for e in rng.integers(0, 6, size=3)]

    def session() -> None:
        sampler = coreset.RS2Sampler(n, fraction, **kwargs)
        size_n, replicas = int(n), int(kwargs["num_replicas"])
        seen: list[int] = []
        for epoch in range(4):
            sampler.set_epoch(epoch)
            whole = sampler.epoch_slice()
            expect(len(set(whole.tolist())) == whole.size, f"epoch {epoch} repeats an index")
            expect(((whole >= 0) & (whole < size_n)).all(), "index out of range")
            expect(whole.size % replicas == 0, "slice not divisible among replicas")
            shard = list(sampler)
            expect(len(shard) == len(sampler), f"len {len(sampler)} but {len(shard)} items")
            expect(shard == whole[int(kwargs["rank"]) :: replicas].tolist(), "shard differs")
            seen.extend(whole.tolist())
        first_pass = seen[:size_n]
        expect(len(set(first_pass)) == len(first_pass), "an index came back within one pass")
        for epoch in epochs:
            again = coreset.RS2Sampler(n, fraction, **kwargs)
            again.set_epoch(epoch)
            sampler.set_epoch(epoch)
            expect(
                np.array_equal(again.epoch_slice(), sampler.epoch_slice()),
                "epoch not a function of seed",
            )

    return Case(session, valid=valid, label=label)


@entry("coreset.ImportanceSampler", fast_calls=40)
def importance_sampler(rng: np.random.Generator) -> Case:
    scores, s_label = _scores(rng)
    if scores.size > 5000:
        scores = scores[:5000]
    positive = int(np.count_nonzero(scores))
    num, n_ok, n_label = integer(
        rng, 0, None, typical=int(rng.integers(0, positive + 2)), size_like=True
    )
    replacement, r_ok, r_label = flag(rng)
    mix, m_ok, m_label = real(rng, 0.0, 1.0, typical=(0.0, 0.5))
    if chance(rng, 0.5):
        mix, m_ok, m_label = 0.0, True, "mix 0"
    kwargs, valid, label = _sampler_args(rng)
    kwargs.update(replacement=replacement, mix=mix)
    value: Any = scores
    if chance(rng, 0.15):
        value, bad_ok, how = spoil(rng, scores, kinds="fiu")
        valid = _and(valid, False if bad_ok is False else None)
        label += f"; scores {how}"
    elif chance(rng, 0.3):
        import torch

        value = torch.from_numpy(scores.copy())
    if positive == 0 or not np.isfinite(scores.sum()) or scores.sum() == 0:
        valid = _and(valid, None)
    positives = scores[scores > 0]
    if r_ok is True and not replacement and positives.size and positives.min() < 2**-1018:
        valid = _and(valid, None)  # documented: such scores cannot be drawn without replacement
    if m_ok and 0 < float(mix) < 1e-300:
        valid = _and(valid, None)  # mix / n underflows: the zero scores stay undrawable
    drawable = scores.size if (m_ok and float(mix) > 0) else positive
    valid = _and(valid, n_ok, None if r_ok is not True else True, m_ok)
    if r_ok is True and not replacement and n_ok is True and int(num) > drawable:
        valid = _and(valid, False if isinstance(value, np.ndarray) and value is scores else None)
    if n_ok is True and int(num) > 100_000:
        valid = _and(valid, None)
    label = f"{s_label}; num_samples {n_label}; replacement {r_label}; {m_label}; {label}"

    def session() -> None:
        import torch

        sampler = coreset.ImportanceSampler(value, num, **kwargs)
        scores = sampler.state_dict()["scores"].numpy()
        for epoch in range(3):
            sampler.set_epoch(epoch)
            drawn = sampler.epoch_draw()
            expect(drawn.size == int(num), f"{drawn.size} draws, asked {int(num)}")
            expect(((drawn >= 0) & (drawn < scores.size)).all(), "index out of range")
            if float(mix) == 0.0 and drawn.size:
                expect((scores[drawn] > 0).all(), "a zero score was drawn")
            if not replacement:
                expect(np.unique(drawn).size == drawn.size, "repeated draw without replacement")
            shard = list(sampler)
            expect(len(shard) == len(sampler), "len differs from the shard")
            if drawn.size:
                weights = sampler.weights_for(torch.from_numpy(drawn))
                expect(bool(torch.isfinite(weights).all()) and bool((weights > 0).all()), "weights")
        sampler.update_scores(scores[::-1].copy())
        expect(np.array_equal(sampler.state_dict()["scores"].numpy(), scores[::-1]), "scores")
        state = sampler.state_dict()
        sampler.load_state_dict(state)

    return Case(session, valid=valid, label=label)


@entry("coreset.last_layer_gradient_norms", fast_calls=40, weight=0.5)
def last_layer_gradient_norms(rng: np.random.Generator) -> Case:
    import torch

    n, d, c = size(rng, 0, 8), size(rng, 1, 5), size(rng, 1, 5)
    features = torch.from_numpy(rng.standard_normal((n, d)))
    logits = torch.from_numpy(rng.standard_normal((n, c)) * pick(rng, (1.0, 100.0, 1e30)))
    targets = torch.from_numpy(rng.integers(0, c, size=n))
    args: list[Any] = [features, logits, targets]
    valid: bool | None = True
    label = f"({n}, {d}) features, {c} classes"
    if chance(rng, 0.3):
        roll = int(rng.integers(6))
        which = int(rng.integers(3))
        if roll == 0:
            args[which], label = args[which].numpy(), f"{label}; argument {which} as numpy"
        elif roll == 1:
            args[2], label = targets.double(), f"{label}; float targets"
        elif roll == 2:
            args[2], label = targets + c, f"{label}; targets out of range"
            valid = not n
        elif roll == 3:
            args[which], label = (
                args[which][:-1] if n else args[which][None],
                f"{label}; argument {which} shorter",
            )
        elif roll == 4:
            args[which], label = args[which].reshape(-1), f"{label}; argument {which} flat"
        else:
            args[2], label = targets.to(torch.bool), f"{label}; bool targets"
        if valid is True:
            valid = None
    if valid is not True:
        return Case(coreset.last_layer_gradient_norms, tuple(args), valid=valid, label=label)
    probabilities = torch.softmax(logits, dim=1)
    residual = probabilities - torch.nn.functional.one_hot(targets, c).to(probabilities.dtype)
    expected = residual.norm(dim=1) * torch.sqrt((features * features).sum(dim=1) + 1)

    def check(out: Any) -> None:
        expect(
            out.shape == (n,) and bool(torch.allclose(out, expected, rtol=1e-12)), "norms differ"
        )

    return Case(
        coreset.last_layer_gradient_norms, tuple(args), valid=True, check=check, label=label
    )
