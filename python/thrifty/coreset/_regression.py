"""lp regression on a coreset: sample rows of ``[A b]``, solve the weighted problem in Rust."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array
from thrifty._checks import check_int, check_length, check_positive, check_real, check_seed
from thrifty.coreset._coreset import Coreset
from thrifty.coreset._embedding import Method, scores_for
from thrifty.coreset._sample import sample
from thrifty.coreset._scores import Float64Array, checked_matrix, leverage_scores
from thrifty.errors import InvalidArgumentError, ShapeError


class RegressionResult(NamedTuple):
    """The solution of the sampled problem and the coreset it was solved on."""

    x: Float64Array
    coreset: Coreset


def checked_target(b: Any, n: int) -> Float64Array:
    array = host_array(b, "b", kinds="fiu", dtype=np.float64)
    if array.ndim != 1 or array.shape[0] != n:
        raise ShapeError(f"b must have shape ({n},) like the rows of A, got {array.shape}", "b")
    return array


def lp_regression(
    A: Any,  # noqa: N803 (the field's name)
    b: Any,
    p: float,
    *,
    weights: Any = None,
    iters: int = 100,
    tol: float = 1e-10,
) -> Float64Array:
    """Solve ``min_x sum_i weights_i |a_i^T x - b_i|^p`` for ``1 <= p <= 256`` in Rust.

    Past ``p = 256``, ``|r|^p`` leaves the float64 range and the problem is l-infinity
    regression in all but name; such a ``p`` is refused by name.

    ``p = 2``: one least-squares solve by QR. Otherwise iteratively reweighted least squares
    (IRLS) with weights ``|r_i|^{p-2}``, residuals floored at ``1e-8 * max_i |r_i|`` so the
    weights stay finite for ``p < 2`` (the bias this adds is of that relative order), and a
    backtracking line search on the true cost so every step decreases it (plain IRLS can
    oscillate for ``p > 3``). Stops after ``iters`` iterations or when an iteration
    decreases the cost by less than ``tol`` relatively.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> A = np.vstack([np.ones(5), np.arange(5.0)]).T
    >>> coreset.lp_regression(A, 2.0 * np.arange(5.0), 1.0).round(6).tolist()
    [0.0, 2.0]
    """
    array = checked_matrix(A)
    target = checked_target(b, array.shape[0])
    value = check_real(p, "p", low=1.0, high=256.0)
    row_weights = None
    if weights is not None:
        row_weights = host_array(weights, "weights", kinds="fiu", dtype=np.float64, ndim=1)
    fit = _native.coreset_lp_regression(
        array,
        target,
        value,
        weights=row_weights,
        iters=check_int(iters, "iters", minimum=1, maximum=2**63 - 1),
        tol=check_positive(tol, "tol"),
    )
    return fit.x


def regression(
    A: Any,  # noqa: N803 (the field's name)
    b: Any,
    p: float,
    m: int,
    *,
    method: Method = "lewis",
    seed: int = 0,
    replace: bool = True,
    iters: int = 100,
    tol: float = 1e-10,
) -> RegressionResult:
    """Approximate ``argmin_x ||Ax - b||_p`` from ``m`` sampled, reweighted rows.

    The scores come from the ``n x (d + 1)`` matrix ``[A b]``: the cost is
    ``||[A b] (x, -1)||_p``, so a subspace embedding of the column span of ``[A b]``
    preserves the cost of every ``x`` at once, and the minimiser on the coreset costs at most
    ``(1 + eps) / (1 - eps)`` times the optimum on the full data. Scores of ``A`` alone
    would miss rows whose residual, not design, makes them matter (outliers in ``b``).

    Parameters
    ----------
    A : array_like, shape (n, d)
    b : array_like, shape (n,)
    p : float
        The norm, ``p >= 1`` (the problem is convex there).
    m : int
        Rows to draw. With Lewis weights, ``m = O(d log(d) / eps^2)`` for ``1 <= p <= 2``
        and ``O(d^{p/2} log(d) / eps^2)`` for ``p > 2`` (Cohen and Peng, arXiv 1412.0588);
        In our tests (heavy-tailed rows and noise, ``p = 1, 2, 3``), ``m = 50 (d + 1)``
        keeps the full-data cost of ``x`` within ``1.05`` times the optimum.
    method, seed, replace
        As for :func:`subspace_embedding`.
    iters, tol
        As for :func:`lp_regression`.

    Returns
    -------
    RegressionResult
        ``x`` (shape ``(d,)``) and the :class:`Coreset` of rows it was solved on.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((5000, 3))
    >>> b = A @ np.array([1.0, -2.0, 0.5]) + rng.laplace(size=5000)
    >>> x, c = coreset.regression(A, b, 1.0, 800, seed=1)
    >>> bool(np.abs(x - [1.0, -2.0, 0.5]).max() < 0.2)
    True
    """
    array = checked_matrix(A)
    target = checked_target(b, array.shape[0])
    value = check_positive(p, "p")
    if value < 1:
        raise InvalidArgumentError(f"p must be >= 1 for regression, got {p}", "p")
    draws = check_length(m, "m", minimum=1)
    seed = check_seed(seed)
    augmented = np.ascontiguousarray(np.column_stack([array, target]))
    try:
        scores = scores_for(augmented, value, method)
    except InvalidArgumentError as error:
        if error.argument != "A" or "rank-deficient" not in str(error):
            raise
        leverage_scores(array)  # raises, naming A, when A itself is the rank-deficient part
        raise InvalidArgumentError(
            f"[A b] is rank-deficient ({error}); b lies in the column span of A, so the "
            "regression is solved exactly by least squares on the full data",
            "b",
        ) from error
    indices, weights = sample(scores, draws, replace=replace, seed=seed)
    x = lp_regression(array[indices], target[indices], value, weights=weights, iters=iters, tol=tol)
    return RegressionResult(x, Coreset(indices, weights, p=value, method=method))
