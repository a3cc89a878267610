"""Baselines for the benchmarks: what a user would write without thrifty.

They live here, never in the library (DESIGN.md): each one is the yardstick a benchmark
group measures thrifty against, and the reference its result is checked against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Float64Array = np.ndarray[Any, np.dtype[np.float64]]
Int64Array = np.ndarray[Any, np.dtype[np.int64]]


# --------------------------------------------------------------------------------------
# The BOSS dynamic programme
# --------------------------------------------------------------------------------------


def numpy_optimal_path(cost: Float64Array, k: int, future_weight: float = 1.0) -> Int64Array:
    """The K-jump DP, one vectorised min/argmin over the whole matrix per layer.

    ``best[m][i]`` is the least cost of going from ``i`` to ``n`` in ``m`` jumps; layer
    ``m`` is ``min_j cost[i, j] + w * best[m - 1][j]`` over the strict upper triangle.
    ``argmin`` keeps the first minimum, so ties go to the smallest next node, as in
    :func:`thrifty.steps.optimal_path`. O(k n^2) time, O(k n + n^2) memory.
    """
    n = cost.shape[0] - 1
    # The strict lower triangle and the diagonal are no jumps; +inf keeps them out of the min.
    masked = np.where(np.triu(np.ones((n + 1, n + 1), dtype=bool), 1), cost, np.inf)
    best = masked[:, n].copy()  # one jump: straight to n
    best[n] = np.inf  # n cannot jump any further
    choices = np.empty((k, n + 1), dtype=np.int64)
    choices[0] = n
    candidates = np.empty_like(masked)
    for m in range(1, k):
        np.add(masked, future_weight * best[None, :], out=candidates)
        choices[m] = np.argmin(candidates, axis=1)
        best = np.take_along_axis(candidates, choices[m][:, None], axis=1)[:, 0]
    nodes = [0]
    for m in range(k - 1, -1, -1):
        nodes.append(int(choices[m][nodes[-1]]))
    return np.asarray(nodes, dtype=np.int64)


def python_optimal_path(cost: Float64Array, k: int, future_weight: float = 1.0) -> Int64Array:
    """The K-jump DP as a triple loop in pure Python, in the style of the BOSS reference code.

    The matrix goes through ``tolist()`` first: indexing nested lists is several times
    faster than indexing a NumPy array element by element, so this is the kinder version
    of that code. A strict ``<`` keeps the smallest next node on ties.
    """
    c: list[list[float]] = cost.tolist()
    n = len(c) - 1
    inf = float("inf")
    best = [c[i][n] for i in range(n)] + [inf]
    choices: list[list[int]] = [[n] * (n + 1)]
    for _ in range(1, k):
        new_best = [inf] * (n + 1)
        choice = [n] * (n + 1)
        for i in range(n):
            row = c[i]
            lowest = inf
            argbest = i + 1
            for j in range(i + 1, n):
                value = row[j] + future_weight * best[j]
                if value < lowest:
                    lowest = value
                    argbest = j
            new_best[i] = lowest
            choice[i] = argbest
        best = new_best
        choices.append(choice)
    nodes = [0]
    for m in range(k - 1, -1, -1):
        nodes.append(choices[m][nodes[-1]])
    return np.asarray(nodes, dtype=np.int64)


# --------------------------------------------------------------------------------------
# The BOSS teacher cost matrix
# --------------------------------------------------------------------------------------


def naive_cost_matrix(velocity: Any, grid: Float64Array, noise: torch.Tensor) -> Float64Array:
    """The BOSS cost matrix the way the reference code computes it.

    Every teacher state and velocity of every sample is kept (``(2n + 1) * samples * state``
    numbers at once), then each of the ``n (n + 1) / 2`` pairs ``i < j`` is visited in a
    Python loop, with one vectorised residual and norm over all the samples per pair.
    """
    n = len(grid) - 1
    samples = noise.shape[0]
    with torch.no_grad():
        states = [noise]
        velocities = []
        for i in range(n):
            v = velocity(states[i], noise.new_full((samples,), float(grid[i])))
            velocities.append(v)
            states.append(states[i] + float(grid[i + 1] - grid[i]) * v)
        cost = np.zeros((n + 1, n + 1))
        for i in range(n):
            for j in range(i + 1, n + 1):
                jump = states[i] + float(grid[j] - grid[i]) * velocities[i] - states[j]
                cost[i, j] = float(
                    torch.linalg.vector_norm(jump.reshape(samples, -1), dim=1).mean()
                )
    return cost


# --------------------------------------------------------------------------------------
# Hamming distances: text against pattern, and top-k over packed binary codes
# --------------------------------------------------------------------------------------


def numpy_text_to_pattern(text: Any, pattern: Any) -> Any:
    """Sliding comparison: one vectorised ``text[j : j + windows] != pattern[j]`` per
    pattern position, accumulated into the counts. ``O(n m)`` element operations."""
    windows = len(text) - len(pattern) + 1
    counts = np.zeros(windows, dtype=np.int32)
    for j, letter in enumerate(pattern.tolist()):
        np.add(counts, text[j : j + windows] != letter, out=counts, casting="unsafe")
    return counts


def scipy_fft_text_to_pattern(text: Any, pattern: Any) -> Any:
    """Fischer-Paterson with SciPy: per distinct letter of the pattern, one
    ``scipy.signal.fftconvolve`` of the text's indicator with the reversed pattern's,
    summed into the match counts; the distance is ``m`` minus the matches."""
    from scipy import signal

    m = len(pattern)
    matches = np.zeros(len(text) - m + 1)
    for letter in np.unique(pattern).tolist():
        text_indicator = (text == letter).astype(np.float64)
        pattern_indicator = (pattern[::-1] == letter).astype(np.float64)
        matches += signal.fftconvolve(text_indicator, pattern_indicator, mode="valid")
    return (m - np.rint(matches)).astype(np.int32)


def faiss_binary_index(db: Any, *, threads: int) -> Any:
    """A ``faiss.IndexBinaryFlat`` holding ``db`` (packed codes), searching on ``threads``."""
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexBinaryFlat(8 * db.shape[1])
    index.add(db)
    return index


def faiss_topk(index: Any, queries: Any, k: int) -> tuple[Any, Any]:
    """Exhaustive top-k with faiss' flat binary index: ``(distances, indices)``."""
    return index.search(queries, k)  # type: ignore[no-any-return]


def numkong_topk(
    packed_db: Any, n_db: int, queries: Any, k: int, *, threads: int, block: int = 1 << 16
) -> tuple[Any, Any]:
    """Top-k from NumKong (SimSIMD's successor): all distances, then ``argpartition``.

    NumKong has no top-k: ``numkong.hammings_packed`` (a SIMD cross-distance kernel over a
    database packed once by ``numkong.hammings_pack``) fills a ``(queries, block)`` uint32
    block, split between ``threads`` Python threads by query rows (it releases the GIL);
    each block's ``k`` best go through ``numpy.argpartition``, and the candidates of every
    block are merged and sorted by (distance, index) at the end. ``argpartition`` keeps an
    arbitrary subset of the codes tied at the k-th distance, so only the distances are
    comparable with :func:`thrifty.hamming.topk`'s.
    """
    import itertools
    import threading

    import numkong

    nq = len(queries)
    starts = np.linspace(0, nq, threads + 1).astype(int)
    best_d: list[Any] = []
    best_i: list[Any] = []
    for lo in range(0, n_db, block):
        part = packed_db[lo // block]
        width = min(block, n_db - lo)
        out = numkong.empty((nq, width), dtype="uint32")
        workers = [
            threading.Thread(
                target=numkong.hammings_packed,
                args=(queries, part),
                kwargs={"out": out, "start_row": int(a), "end_row": int(b)},
            )
            for a, b in itertools.pairwise(starts)
            if b > a
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        distances = np.asarray(out)
        kept = min(k, width)
        index = np.argpartition(distances, kept - 1, axis=1)[:, :kept]
        best_d.append(np.take_along_axis(distances, index, axis=1))
        best_i.append(index + lo)
    d = np.concatenate(best_d, axis=1).astype(np.int64)
    i = np.concatenate(best_i, axis=1)
    order = np.lexsort((i, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def numkong_pack(db: Any, *, block: int = 1 << 16) -> list[Any]:
    """``db`` packed by ``numkong.hammings_pack`` in blocks of ``block`` rows."""
    import numkong

    return [
        numkong.hammings_pack(np.ascontiguousarray(db[lo : lo + block]), dtype="uint1")
        for lo in range(0, len(db), block)
    ]


# --------------------------------------------------------------------------------------
# thrifty.coreset: leverage scores and Lewis weights as a NumPy user would compute them
# --------------------------------------------------------------------------------------


def numpy_leverage_scores(a: Float64Array) -> Float64Array:
    """Squared row norms of ``Q`` from LAPACK's reduced QR (``numpy.linalg.qr``)."""
    q, _ = np.linalg.qr(a, mode="reduced")
    scores: Float64Array = np.einsum("ij,ij->i", q, q)
    return scores


def numpy_lewis_weights(
    a: Float64Array, p: float, *, iters: int = 1000, tol: float = 1e-6
) -> tuple[Float64Array, int]:
    """Cohen-Peng's iteration ``w <- (a_i^T (A^T W^{1-2/p} A)^{-1} a_i)^{p/2}`` (p < 4).

    Each step forms the ``d x d`` Gram matrix, takes its Cholesky factor ``L`` and the
    squared column norms of ``L^{-1} A^T``: the usual NumPy way, with the same start
    (``d / n``), stopping rule (relative residual at most ``tol``) and iteration cap as
    ``thrifty.coreset.lewis_weights``. Returns the weights and the iterations run.
    """
    n, d = a.shape
    w = np.full(n, d / n)
    for iteration in range(1, iters + 1):
        gram = a.T @ (a * (w ** (1.0 - 2.0 / p))[:, None])
        lower = np.linalg.cholesky(gram)
        q = (np.linalg.solve(lower, a.T) ** 2).sum(axis=0)
        image = q ** (p / 2.0)
        if np.max(np.abs(w - image) / w) <= tol:
            return w, iteration
        w = image
    raise RuntimeError(f"no convergence in {iters} iterations")
