"""lp Lewis weights, in Rust."""

from __future__ import annotations

from typing import Any

from thrifty import _native
from thrifty._arrays import is_gpu_array
from thrifty._checks import check_int, check_positive
from thrifty.coreset import _gpu
from thrifty.coreset._scores import Float64Array, checked_matrix


def lewis_weights(A: Any, p: float, *, iters: int = 1000, tol: float = 1e-6) -> Float64Array:  # noqa: N803 (the field's name)
    """lp Lewis weights: the fixed point ``w_i = (a_i^T (A^T W^{1-2/p} A)^{-1} a_i)^{p/2}``.

    Sampling rows by Lewis weights gives an lp subspace embedding with about ``d`` rows for
    ``p < 2`` and ``d^{p/2}`` for ``p > 2`` (Cohen and Peng, arXiv 1412.0588). For ``p = 2``
    they are the leverage scores.

    Iteration, with ``T(w)`` the right-hand side above:

    * ``p <= 2``: Cohen and Peng's ``w <- T(w)``, a contraction with factor ``|p/2 - 1|``.
    * ``p > 2``: the iteration damped in log space, ``w <- w^{1-2/p} (a_i^T (A^T W^{1-2/p}
      A)^{-1} a_i)``, whose fixed points are those of ``T``. Below ``p = 4`` it averages the
      contraction ``T`` with the identity (factor ``2 - 4/p``); from ``p = 4`` on ``T`` no
      longer contracts. Its log-space Jacobian at the fixed point is
      ``(1 - 2/p)(I - D^{-1}(P o P))``, with ``P`` the projection onto the columns of
      ``W^{1/2-1/p} A`` and ``D = diag(P)``; ``D^{-1}(P o P)`` is row-stochastic and similar
      to a PSD matrix (Schur product theorem), so the spectrum lies in ``[0, 1 - 2/p]`` and
      the iteration converges linearly at that rate near the fixed point, faster than the
      plain iteration's ``p/2 - 1`` for every ``p > 2``. Every iterate sums to exactly ``d``.

    Parameters
    ----------
    A : array_like, shape (n, d)
        As for :func:`leverage_scores` (full column rank, finite, ``n >= d``); a CuPy array
        or CUDA tensor runs the same iteration on its device.
    p : float
        The norm, ``p > 0``.
    iters : int
        Most iterations; 1000 by default. Not reaching ``tol`` within them raises
        :class:`thrifty.InvalidArgumentError` naming ``iters`` (no half-converged result).
    tol : float
        Stop once the relative fixed-point residual ``max_i |w_i - T(w)_i| / w_i`` is at most
        ``tol``; ``1e-6`` by default (sampling needs only constant-factor weights, Cohen and
        Peng, arXiv 1412.0588).

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        The weights, in ``[0, 1]``, summing to ``d`` (within ``tol``).

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> A = np.vstack([np.eye(2), np.ones((2, 2))])
    >>> round(float(coreset.lewis_weights(A, 1.0).sum()), 4)
    2.0
    """
    p = check_positive(p, "p")
    iters = check_int(iters, "iters", minimum=1, maximum=2**63 - 1)
    tol = check_positive(tol, "tol")
    if is_gpu_array(A):
        return _gpu.lewis_weights(A, p, iters, tol)  # type: ignore[no-any-return]
    return _native.coreset_lewis_weights(checked_matrix(A), p, iters=iters, tol=tol).weights
