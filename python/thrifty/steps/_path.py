"""The BOSS dynamic programme: the best K jumps through a cost matrix, in Rust."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array
from thrifty._checks import check_choice, check_int, check_positive

Strategy = Literal["auto", "full", "monge"]
Int64Array = np.ndarray[Any, np.dtype[np.int64]]


# Jump counts travel to Rust as usize; anything larger than this is refused here, by name.
_MAX_JUMPS = 2**63 - 1


def _cost(cost: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    return host_array(cost, "cost", dtype=np.float64)


def _jumps(k: Any, argument: str) -> int:
    return check_int(k, argument, minimum=1, maximum=_MAX_JUMPS)


def optimal_path(
    cost: Any, k: int, *, future_weight: float = 1.0, strategy: Strategy = "auto"
) -> Int64Array:
    """The ``k + 1`` node indices, from 0 to ``n``, of the ``k`` jumps of least summed cost.

    Solves ``dp[i][1] = c[i][n]``, ``dp[i][k] = min_{i<j<n} c[i][j] + w * dp[j][k-1]`` exactly
    (BOSS, arXiv 2312.16414), with SIMD min-plus rows on all cores. From 256 nodes on, each
    cell reads its row's cheapest entries first and stops as soon as no later entry can win,
    falling back to a scan that skips blocks which cannot hold the minimum; the answer is
    the full scan's, bit for bit. When the cost matrix is Monge (checked in O(n^2)), a
    divide-and-conquer DP gives the same answer in O(k n log n).

    Parameters
    ----------
    cost : array, shape (n + 1, n + 1)
        ``cost[i][j]`` is the cost of one jump from node ``i`` to node ``j``. Only the strict
        upper triangle is read; it must be finite and non-negative. float32 is widened.
    k : int
        Number of jumps, ``1 <= k <= n``.
    future_weight : float
        GITS' coefficient (arXiv 2405.11326) inflating the cost of later jumps: the path cost
        is ``sum_m future_weight**m * c(jump m)``. 1 gives the plain sum.
    strategy : {"auto", "full", "monge"}
        Force the full DP or the Monge one (which raises if the matrix is not Monge).

    Returns
    -------
    numpy.ndarray of int64, shape (k + 1,)
        Strictly increasing from 0 to ``n``. Ties go to the smallest next node, so the
        lexicographically smallest optimal path is returned.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> i, j = np.indices((5, 5))
    >>> cost = (j - i).astype(float) ** 2
    >>> steps.optimal_path(cost, 2).tolist()
    [0, 2, 4]
    """
    return _native.optimal_path(
        _cost(cost),
        _jumps(k, "k"),
        check_positive(future_weight, "future_weight"),
        check_choice(strategy, "strategy", _native.STRATEGIES),
    ).nodes


def optimal_path_cost(cost: Any, k: int, *, future_weight: float = 1.0) -> float:
    """The summed (weighted) cost of :func:`optimal_path`."""
    return _native.optimal_path(
        _cost(cost), _jumps(k, "k"), check_positive(future_weight, "future_weight")
    ).cost


def optimal_paths(cost: Any, k_max: int, *, future_weight: float = 1.0) -> dict[int, Int64Array]:
    """:func:`optimal_path` for every budget ``k = 1 .. k_max``, in one DP pass.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> i, j = np.indices((5, 5))
    >>> paths = steps.optimal_paths((j - i).astype(float) ** 2, 4)
    >>> {k: p.tolist() for k, p in paths.items()}[2]
    [0, 2, 4]
    """
    paths = _native.optimal_paths(
        _cost(cost), _jumps(k_max, "k_max"), check_positive(future_weight, "future_weight")
    )
    return {k: path.nodes for k, path in enumerate(paths, start=1)}


def is_monge(cost: Any) -> bool:
    """Whether the strict upper triangle of ``cost`` has the Monge property.

    ``c[i][j] + c[i+1][j+1] <= c[i][j+1] + c[i+1][j]`` wherever all four are defined.
    """
    return _native.is_monge(_cost(cost))
