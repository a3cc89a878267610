"""k-means coresets: D^2-seeding sensitivities (in Rust), sampling, and the cost they keep."""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array
from thrifty._checks import check_int, check_length, check_seed
from thrifty.coreset._coreset import Coreset
from thrifty.coreset._sample import sample
from thrifty.coreset._scores import Float64Array
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError


def _checked_k(k: Any, n: int) -> int:
    value = check_int(k, "k", minimum=0)
    if not 1 <= value <= n:
        raise InvalidArgumentError(f"k must be in [1, n = {n}], got {value}", "k")
    return value


def kmeans_sensitivities(X: Any, k: int, *, seed: int = 0) -> Float64Array:  # noqa: N803 (the field's name)
    """Sensitivity bounds for k-means from D^2 (k-means++) seeding.

    The bound of Bachem, Lucic and Krause, "Practical Coreset Constructions for Machine
    Learning" (arXiv 1703.06476): with ``B`` the ``k`` D^2-sampled seeds, ``c`` the mean of
    ``d(x, B)^2``, ``P_b`` the points whose nearest seed is ``b`` and
    ``alpha = 16 (log2 k + 2)``,

    ``s(x) = alpha d(x,B)^2 / c + 2 alpha (sum_{x' in P_b} d(x',B)^2) / (|P_b| c) + 4 n / |P_b|``.

    The scores sum to ``n (3 alpha + 4 k)``. Seeding runs in Rust with parallel distance
    updates; it depends only on ``seed``, not on the thread count.

    Parameters
    ----------
    X : array_like, shape (n, d)
        float64 or float32 points, finite.
    k : int
        Number of clusters, ``1 <= k <= n``.
    seed : int
        Seed of the D^2 sampling.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> X = np.vstack([np.zeros((50, 2)), np.ones((50, 2)), [[30.0, 30.0]]])
    >>> s = coreset.kmeans_sensitivities(X, 3, seed=0)
    >>> bool(s[-1] == s.max())
    True
    """
    points = checked_points(X)
    return _native.coreset_kmeans_sensitivities(
        points, _checked_k(k, points.shape[0]), seed=check_seed(seed)
    ).sensitivities


def checked_points(X: Any) -> Float64Array:  # noqa: N803 (the field's name)
    points = host_array(X, "X", kinds="f", dtype=np.float64, ndim=2)
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise ShapeError(
            f"X must hold at least one point of one dimension, got {points.shape}", "X"
        )
    return points


def kmeans(X: Any, k: int, m: int, *, seed: int = 0) -> Coreset:  # noqa: N803 (the field's name)
    """A k-means coreset: ``m`` points drawn with replacement by :func:`kmeans_sensitivities`.

    Each draw of point ``i`` carries weight ``1 / (m p_i)``, so the weighted cost on the
    coreset is an unbiased estimate of the full k-means cost for every set of centers; with
    ``m = O(k log k (d log k + log(1/delta)) / eps^2)`` it is within ``1 ± eps`` of it for all
    centers at once (Bachem, Lucic and Krause, arXiv 1703.06476). :func:`kmeans_cost`
    measures it.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> X = np.random.default_rng(0).standard_normal((5000, 2))
    >>> c = coreset.kmeans(X, 4, 500, seed=1)
    >>> centers = X[:4]
    >>> full = coreset.kmeans_cost(X, centers)
    >>> bool(abs(coreset.kmeans_cost(X, centers, coreset=c) / full - 1) < 0.2)
    True
    """
    points = checked_points(X)
    draws = check_length(m, "m", minimum=1)
    seed = check_seed(seed)
    # The seeding and the draw use different streams of the same seed.
    scores = _native.coreset_kmeans_sensitivities(
        points, _checked_k(k, points.shape[0]), seed=seed
    ).sensitivities
    indices, weights = sample(scores, draws, replace=True, seed=seed ^ 0x9E3779B97F4A7C15)
    return Coreset(indices, weights, p=2.0, method="kmeans")


def kmeans_cost(X: Any, centers: Any, *, coreset: Coreset | None = None) -> float:  # noqa: N803 (the field's name)
    """``sum_x w_x min_c ||x - c||^2``: over all of ``X``, or over ``coreset`` with its weights.

    A measurement (vectorised NumPy), for checking a coreset against the full data.
    """
    points = checked_points(X)
    c = host_array(centers, "centers", kinds="fiu", dtype=np.float64, ndim=2)
    if c.shape[0] == 0 or c.shape[1] != points.shape[1]:
        raise ShapeError(
            f"centers must have at least one center of {points.shape[1]} columns like X, "
            f"got shape {c.shape}",
            "centers",
        )
    for name, array in (("X", points), ("centers", c)):
        if not np.isfinite(array).all():
            raise NonFiniteError(f"{name} must be finite, got NaN or infinity", name)
    if coreset is None:
        weights, rows = np.ones(points.shape[0]), points
    else:
        coreset._rows_of(points, "X")  # every index must name a row of X
        weights, rows = coreset.weights, points[coreset.indices]
    # Differences, not |x|^2 - 2 x.c + |c|^2: the expansion cancels to garbage (even NaN)
    # for points far from the origin. One center at a time keeps memory at O(n d).
    nearest = np.full(rows.shape[0], np.inf)
    with np.errstate(over="ignore"):  # a distance beyond float64 is infinite, rightly
        for center in c:
            np.minimum(nearest, ((rows - center) ** 2).sum(axis=1), out=nearest)
    return float(weights @ nearest)
