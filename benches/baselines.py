"""Baselines for the benchmarks: what a user would write without thrifty.

They live here, never in the library: each one is the yardstick a benchmark
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


# --------------------------------------------------------------------------------------
# The CUDA paths: what a PyTorch user would write on the GPU
# --------------------------------------------------------------------------------------


def torch_unpacked_signs(codes: torch.Tensor) -> torch.Tensor:
    """Packed ``uint8`` codes as ``+-1`` bfloat16 vectors, one per bit, for a matmul."""
    shifts = torch.arange(8, device=codes.device, dtype=torch.uint8)
    bits = (codes.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2).to(torch.bfloat16) * 2 - 1


def torch_matmul_cdist(q: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """Hamming distances through a tensor-core matmul: ``(bits - <s_q, s_db>) / 2``.

    Exact while ``bits <= 256`` (bfloat16 holds integers up to 256 exactly, and the matmul
    accumulates in float32).
    """
    sq, sdb = torch_unpacked_signs(q), torch_unpacked_signs(db)
    bits = sq.shape[1]
    return ((bits - (sq @ sdb.T).float()) / 2).round().to(torch.int32)


def torch_matmul_topk(
    q: torch.Tensor, db: torch.Tensor, k: int, *, chunk: int = 1 << 18
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` nearest codes by matmul distances and ``torch.topk`` over database chunks."""
    sq = torch_unpacked_signs(q)
    bits = sq.shape[1]
    best_d: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for start in range(0, db.shape[0], chunk):
        sdb = torch_unpacked_signs(db[start : start + chunk])
        d = (bits - (sq @ sdb.T).float()) / 2
        dk, ik = torch.topk(d, min(k, d.shape[1]), dim=1, largest=False)
        ik = ik + start
        if best_d is None or best_i is None:
            best_d, best_i = dk, ik
        else:
            merged_d, order = torch.topk(torch.cat([best_d, dk], 1), k, dim=1, largest=False)
            best_d, best_i = merged_d, torch.gather(torch.cat([best_i, ik], 1), 1, order)
    assert best_d is not None
    assert best_i is not None
    return best_d.round().to(torch.int32), best_i


def torch_leverage_scores(a: torch.Tensor) -> torch.Tensor:
    """Squared row norms of ``Q`` from ``torch.linalg.qr(A)`` (cuSOLVER on CUDA)."""
    q, _ = torch.linalg.qr(a, mode="reduced")
    return (q * q).sum(dim=1)


def per_parameter_muon_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor],
    *,
    lr: float = 0.02,
    momentum: float = 0.95,
) -> None:
    """Muon as its reference code loops: Nesterov momentum, then 5 quintic Newton-Schulz
    steps in bfloat16, one parameter at a time (Keller Jordan's public implementation)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    for p, g, buf in zip(params, grads, buffers, strict=True):
        buf.lerp_(g, 1 - momentum)
        x = g.lerp(buf, momentum).bfloat16()
        tall = x.size(0) > x.size(1)
        if tall:
            x = x.T
        x = x / (x.norm() + 1e-7)
        for _ in range(5):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        if tall:
            x = x.T
        p.add_(x.to(p.dtype), alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)
