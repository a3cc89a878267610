"""Upper bounds on lp sensitivities, from Lewis weights, in Rust."""

from __future__ import annotations

from typing import Any

from thrifty import _native
from thrifty._checks import check_int, check_positive
from thrifty.coreset._scores import Float64Array, checked_matrix


def lp_sensitivities(A: Any, p: float, *, iters: int = 1000, tol: float = 1e-6) -> Float64Array:  # noqa: N803 (the field's name)
    """Upper bounds on the lp sensitivities ``sigma_i = sup_x |a_i^T x|^p / ||Ax||_p^p``.

    From the lp Lewis weights ``w`` (:func:`lewis_weights`, ``iters`` and ``tol`` as there):
    with ``M = A^T W^{1-2/p} A``, Cauchy-Schwarz gives ``|a_i^T x|^p <= w_i S^{p/2}`` with
    ``S = sum_j w_j^{1-2/p} (a_j^T x)^2``; Hölder bounds ``S <= ||Ax||_p^2`` for ``p <= 2``
    and ``S <= d^{1-2/p} ||Ax||_p^2`` for ``p >= 2``. Hence

    * ``p <= 2``: ``sigma_i <= min(1, w_i)`` (total at most ``d``);
    * ``p >= 2``: ``sigma_i <= min(1, d^{p/2-1} w_i)`` (total at most ``d^{p/2}``).

    The bounds are evaluated in a form that stays valid for the computed, approximate
    weights (with ``T(w)`` and ``rho = max_j T(w)_j / w_j`` in place of ``w`` and 1), so they
    are true upper bounds, not bounds up to ``tol``. See Woodruff and Yasuda
    (arXiv 2306.00732) for how many samples sensitivity sampling needs.

    Parameters
    ----------
    A : array_like, shape (n, d)
        As for :func:`leverage_scores`.
    p : float
        The norm, ``p > 0``.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> A = np.vstack([np.eye(2), 0.01 * np.ones((8, 2))])
    >>> bool(coreset.lp_sensitivities(A, 1.0)[:2].min() > 0.8)
    True
    """
    array = checked_matrix(A)
    return _native.coreset_lp_sensitivities(
        array,
        check_positive(p, "p"),
        iters=check_int(iters, "iters", minimum=1, maximum=2**63 - 1),
        tol=check_positive(tol, "tol"),
    )
