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
