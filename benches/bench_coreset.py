"""thrifty.coreset scores against what a NumPy user would write.

Leverage scores: :func:`thrifty.coreset.leverage_scores` (``method="qr"``, and the sketch
where ``d`` is large) beside the squared row norms of ``Q`` from ``numpy.linalg.qr(A,
mode="reduced")``, at ``n = 10^6, d = 20`` and ``n = 10^5, d = 200``. Lewis weights
(``p = 1``): :func:`thrifty.coreset.lewis_weights` beside ``numpy_lewis_weights``, the same
Cohen-Peng iteration with a Gram-matrix Cholesky per step, with the same start, ``tol`` and
iteration cap. Matrices are Gaussian with heavy-tailed row scales (seeded).

Under ``--benchmark-disable`` (``make test``) every case runs once on small sizes and checks
the answers against each other: exact leverage to 1e-9, the sketch within its documented
factor, Lewis weights within the fixed-point tolerance.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from baselines import numpy_leverage_scores, numpy_lewis_weights
from thrifty import coreset

Array = np.ndarray[Any, Any]

LEVERAGE_SOLVERS = ("thrifty qr", "thrifty sketch", "numpy qr")
LEVERAGE_FULL = [(1_000_000, 20), (100_000, 200)]
LEVERAGE_SMALL = [(20_000, 20), (5_000, 100)]
LEWIS_SOLVERS = ("thrifty lewis", "numpy lewis")
LEWIS_FULL = [(1_000_000, 20), (100_000, 100)]
LEWIS_SMALL = [(20_000, 10)]
TOL = 1e-6


def _timed(config: pytest.Config) -> bool:
    return not config.getoption("benchmark_disable")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    timed = _timed(metafunc.config)
    if "leverage_case" in metafunc.fixturenames:
        sizes = LEVERAGE_FULL if timed else LEVERAGE_SMALL
        cases = [(s, n, d) for n, d in sizes for s in LEVERAGE_SOLVERS]
        metafunc.parametrize("leverage_case", cases, ids=[f"{s}-n{n}-d{d}" for s, n, d in cases])
    if "lewis_case" in metafunc.fixturenames:
        sizes = LEWIS_FULL if timed else LEWIS_SMALL
        cases = [(s, n, d) for n, d in sizes for s in LEWIS_SOLVERS]
        metafunc.parametrize("lewis_case", cases, ids=[f"{s}-n{n}-d{d}" for s, n, d in cases])


@functools.cache
def matrix(n: int, d: int) -> Array:
    rng = np.random.default_rng([n, d])
    a: Array = rng.standard_normal((n, d)) * (1.0 + rng.pareto(2.0, size=(n, 1)))
    return a


@functools.cache
def reference_leverage(n: int, d: int) -> Array:
    return numpy_leverage_scores(matrix(n, d))


def test_leverage_scores(benchmark: Any, leverage_case: tuple[str, int, int]) -> None:
    solver, n, d = leverage_case
    a = matrix(n, d)
    benchmark.group = f"leverage_scores n={n} d={d}"
    role = "baseline" if solver.startswith("numpy") else "ours"
    benchmark.extra_info.update(role=role, label=solver, n=n, d=d)
    if solver == "thrifty qr":
        scores = benchmark(coreset.leverage_scores, a)
        np.testing.assert_allclose(scores, reference_leverage(n, d), atol=1e-9)
    elif solver == "thrifty sketch":
        scores = benchmark(coreset.leverage_scores, a, method="sketch", seed=0)
        ratio = scores / reference_leverage(n, d)
        # The documented factor for eps = 0.5.
        assert ratio.min() >= 0.44 * 0.5
        assert ratio.max() <= 4 * 1.5
    else:
        scores = benchmark.pedantic(numpy_leverage_scores, (a,), rounds=3, iterations=1)
        np.testing.assert_allclose(scores, coreset.leverage_scores(a), atol=1e-9)


def test_lewis_weights(benchmark: Any, lewis_case: tuple[str, int, int]) -> None:
    solver, n, d = lewis_case
    a = matrix(n, d)
    benchmark.group = f"lewis_weights p=1 n={n} d={d} tol={TOL:g}"
    role = "ours" if solver.startswith("thrifty") else "baseline"
    benchmark.extra_info.update(role=role, label=solver, n=n, d=d)
    if role == "ours":
        weights = benchmark(coreset.lewis_weights, a, 1.0, tol=TOL)
        other, _ = numpy_lewis_weights(a, 1.0, tol=TOL)
    else:
        weights, iterations = benchmark.pedantic(
            numpy_lewis_weights, (a, 1.0), {"tol": TOL}, rounds=1, iterations=1
        )
        benchmark.extra_info.update(iterations=iterations)
        other = coreset.lewis_weights(a, 1.0, tol=TOL)
    # Both stop within TOL of the same fixed point, a contraction with factor 1/2.
    np.testing.assert_allclose(weights, other, rtol=4 * TOL)
