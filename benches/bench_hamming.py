"""thrifty.hamming against what a user would write without it.

Text against pattern: :func:`thrifty.hamming.text_to_pattern` (``method="auto"``) beside
a sliding NumPy comparison and per-letter SciPy FFT correlations, over uniform random texts
of ``n`` letters from an alphabet of ``sigma``, with a pattern cut from the text. Binary
codes: :func:`thrifty.hamming.topk` beside ``faiss.IndexBinaryFlat`` and NumKong (SimSIMD's
successor) cross distances plus ``argpartition``, all on the same number of threads.

Baselines live in ``benches/baselines.py`` and run once per cell (``rounds=1``: the SciPy
cell with ``m = 10000``, ``sigma = 256`` takes ~20 s). Under ``--benchmark-disable``
(``make test``) every case runs once on small sizes and checks its answer against another
implementation, so the benchmarks double as tests. ``extra_info`` of the binary groups holds
``pairs_per_s`` and ``gb_per_s`` (database bytes times queries over the median time).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from baselines import (
    faiss_binary_index,
    faiss_topk,
    numkong_pack,
    numkong_topk,
    numpy_text_to_pattern,
    scipy_fft_text_to_pattern,
)
from thrifty import hamming

Array = np.ndarray[Any, Any]
THREADS = 2  # the cores of the machine the README's numbers come from

# --------------------------------------------------------------------------------------
# Text against pattern
# --------------------------------------------------------------------------------------

TEXT_SOLVERS = ("thrifty auto", "numpy sliding", "scipy fftconvolve per letter")
# (n, pattern lengths m, alphabet sizes sigma)
FULL_TEXT = (10**6, (100, 1000, 10000), (4, 26, 256))
SMALL_TEXT = (20_000, (100, 1000), (4, 256))


def _timed(config: pytest.Config) -> bool:
    return not config.getoption("benchmark_disable")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    timed = _timed(metafunc.config)
    if "text_case" in metafunc.fixturenames:
        n, lengths, alphabets = FULL_TEXT if timed else SMALL_TEXT
        cases = [
            (solver, n, m, sigma) for m in lengths for sigma in alphabets for solver in TEXT_SOLVERS
        ]
        metafunc.parametrize(
            "text_case", cases, ids=[f"{s}-n{n}-m{m}-sigma{g}" for s, n, m, g in cases]
        )
    if "binary_case" in metafunc.fixturenames:
        sizes = BINARY_FULL if timed else BINARY_SMALL
        cases = [(solver, *size) for size in sizes for solver in BINARY_SOLVERS]
        metafunc.parametrize(
            "binary_case",
            cases,
            ids=[f"{s}-db{n}-{b}bit-q{q}" for s, n, b, q in cases],
        )


@functools.cache
def text_and_pattern(n: int, m: int, sigma: int) -> tuple[Array, Array]:
    rng = np.random.default_rng([n, m, sigma])
    text = rng.integers(0, sigma, n, dtype=np.int64).astype(np.uint8)
    start = int(rng.integers(0, n - m + 1))
    return text, text[start : start + m].copy()


@functools.cache
def reference_distances(n: int, m: int, sigma: int) -> Array:
    return hamming.text_to_pattern(*text_and_pattern(n, m, sigma), method="naive")


def test_text_to_pattern(benchmark: Any, text_case: tuple[str, int, int, int]) -> None:
    solver, n, m, sigma = text_case
    text, pattern = text_and_pattern(n, m, sigma)
    benchmark.group = f"text_to_pattern n={n} m={m} sigma={sigma}"
    role = "ours" if solver.startswith("thrifty") else "baseline"
    benchmark.extra_info.update(role=role, label=solver, n=n, m=m, sigma=sigma)
    if solver == "thrifty auto":
        distances = benchmark(hamming.text_to_pattern, text, pattern, method="auto")
    else:
        function = numpy_text_to_pattern if solver == "numpy sliding" else scipy_fft_text_to_pattern
        distances = benchmark.pedantic(function, (text, pattern), rounds=1, iterations=1)
    np.testing.assert_array_equal(distances, reference_distances(n, m, sigma))


# --------------------------------------------------------------------------------------
# Top-k over packed binary codes
# --------------------------------------------------------------------------------------

K = 10
BINARY_SOLVERS = ("thrifty topk", "faiss IndexBinaryFlat", "numkong hammings_packed+argpartition")
# (database codes, bits per code, queries)
BINARY_FULL = [(1_000_000, 256, 1000), (200_000, 1024, 1000)]
BINARY_SMALL = [(20_000, 256, 20), (5_000, 1024, 20)]


@functools.cache
def codes(n_db: int, bits: int, n_queries: int) -> tuple[Array, Array]:
    rng = np.random.default_rng([n_db, bits, n_queries])
    db = rng.integers(0, 256, (n_db, bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (n_queries, bits // 8), dtype=np.uint8)
    return db, queries


@functools.cache
def reference_topk(n_db: int, bits: int, n_queries: int) -> Array:
    """The k smallest distances of each query, by thrifty (held to cdist in test_topk)."""
    db, queries = codes(n_db, bits, n_queries)
    distances: Array = hamming.topk(queries, db, K)[0]
    return distances


def test_topk(benchmark: Any, binary_case: tuple[str, int, int, int]) -> None:
    solver, n_db, bits, n_queries = binary_case
    db, queries = codes(n_db, bits, n_queries)
    benchmark.group = f"topk k={K} db={n_db} x {bits} bits, {n_queries} queries"
    role = "ours" if solver.startswith("thrifty") else "baseline"
    benchmark.extra_info.update(role=role, label=solver, threads=THREADS)
    if solver == "thrifty topk":
        # The Rust pool's size is fixed at start-up (RAYON_NUM_THREADS); on the 2-core
        # machine of the README it is the same as the baselines' thread count.
        distances, indices = benchmark(hamming.topk, queries, db, K)
    elif solver.startswith("faiss"):
        pytest.importorskip("faiss")
        index = faiss_binary_index(db, threads=THREADS)
        # Three rounds, not one: faiss' first search also starts its OpenMP threads.
        distances, indices = benchmark.pedantic(
            faiss_topk, (index, queries, K), rounds=3, iterations=1
        )
    else:
        pytest.importorskip("numkong")
        packed = numkong_pack(db)
        distances, indices = benchmark.pedantic(
            numkong_topk,
            (packed, n_db, queries, K),
            {"threads": THREADS},
            rounds=1,
            iterations=1,
        )
    reference_d = reference_topk(n_db, bits, n_queries)
    # Baselines may break ties at the k-th distance differently: compare distances.
    np.testing.assert_array_equal(np.asarray(distances), reference_d)
    if role == "ours":
        # Our result is held to the exhaustive distance matrix (of 20 queries: 1000 x 1M
        # distances would take 4 GB).
        queries, distances, indices = queries[:20], distances[:20], indices[:20]
        full = hamming.cdist(queries, db)
        np.testing.assert_array_equal(np.sort(full, axis=1)[:, :K], reference_d[:20])
        np.testing.assert_array_equal(np.take_along_axis(full, indices, axis=1), distances)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        seconds = stats.stats.median
        benchmark.extra_info.update(
            pairs_per_s=n_db * n_queries / seconds,
            gb_per_s=db.nbytes * n_queries / seconds / 1e9,
        )
