"""Plain NumPy references the fuzz cases compare thrifty's results with.

Each is the definition written the slow, obvious way, for the small sizes the cases draw.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def hamming_distances(text: Array, pattern: Array) -> Array:
    """``out[i] = #{j : pattern[j] != text[i + j]}`` by sliding windows."""
    windows = np.lib.stride_tricks.sliding_window_view(text, pattern.size)
    return np.asarray((windows != pattern[None, :]).sum(axis=1), dtype=np.int64)


def cdist(a: Array, b: Array) -> Array:
    """All-pairs Hamming distances of packed uint8 codes, a row of ``a`` at a time."""
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    for i in range(a.shape[0]):
        out[i] = _POPCOUNT[np.bitwise_xor(a[i][None, :], b)].sum(axis=1)
    return out


def topk(distances: Array, k: int) -> tuple[Array, Array]:
    """The ``k`` smallest (distance, index) pairs of every row."""
    nq, nb = distances.shape
    kept = min(k, nb)
    indices = np.zeros((nq, kept), dtype=np.int64)
    for i in range(nq):
        order = np.lexsort((np.arange(nb), distances[i]))
        indices[i] = order[:kept]
    return np.take_along_axis(distances, indices, axis=1), indices


def radius_csr(distances: Array, r: int) -> tuple[Array, Array, Array]:
    offsets = [0]
    indices: list[int] = []
    found: list[int] = []
    for row in distances:
        hits = np.flatnonzero(row <= r)
        hits = hits[np.lexsort((hits, row[hits]))]
        indices.extend(hits.tolist())
        found.extend(row[hits].tolist())
        offsets.append(len(indices))
    return np.array(offsets), np.array(indices, dtype=np.int64), np.array(found, dtype=np.int64)


def components(distances: Array, r: int) -> list[list[int]]:
    """Connected components (of at least two) of the graph ``distance <= r``."""
    n = distances.shape[0]
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in zip(*np.nonzero(distances <= r), strict=True):
        a, b = find(int(i)), find(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def optimal_path(cost: Array, k: int, future_weight: float) -> tuple[float, list[int]]:
    """The least ``sum_m w^m c(jump m)`` over paths of ``k`` jumps from 0 to ``n``, by DP."""
    best, choice = _dp_tables(cost, k, future_weight)
    path = [0]
    for r in range(k, 0, -1):
        path.append(int(choice[r][path[-1]]))
    return float(best[k][0]), path


def _dp_tables(cost: Array, k: int, future_weight: float) -> tuple[Array, Array]:
    """``best[r][i]``: the least cost of ``r`` more jumps from node ``i`` to ``n``, weighting
    from the first; ``choice[r][i]``: the first node of that path (ties to the smallest)."""
    n = cost.shape[0] - 1
    best = np.full((k + 1, n + 1), np.inf)
    best[0][n] = 0.0
    choice = np.zeros((k + 1, n + 1), dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        for r in range(1, k + 1):
            for i in range(n):
                values = cost[i, i + 1 :] + future_weight * best[r - 1, i + 1 :]
                j = int(np.argmin(values))
                best[r][i] = values[j]
                choice[r][i] = i + 1 + j
    return best, choice


def path_cost(cost: Array, path: Any, future_weight: float) -> float:
    total, weight = 0.0, 1.0
    for a, b in itertools.pairwise(path):
        total += weight * cost[a][b]
        weight *= future_weight
    return total


def is_monge(cost: Array) -> bool:
    n = cost.shape[0]
    for i in range(n - 1):
        for j in range(i + 2, n - 1):
            if not cost[i][j] + cost[i + 1][j + 1] <= cost[i][j + 1] + cost[i + 1][j]:
                return False
    return True


def lgreco(errors: Array, sizes: Array, budget: float) -> float | None:
    """The least total size with summed error within ``budget`` (exhaustive), or None."""
    best: float | None = None
    layers, levels = errors.shape
    for code in range(levels**layers):
        chosen = [(code // levels**layer) % levels for layer in range(layers)]
        error = sum(float(errors[layer, c]) for layer, c in enumerate(chosen))
        if error <= budget:
            total = sum(float(sizes[layer, c]) for layer, c in enumerate(chosen))
            best = total if best is None else min(best, total)
    return best


def leverage_scores(a: Array) -> Array:
    q, _ = np.linalg.qr(a)
    return np.asarray((q * q).sum(axis=1))
