"""Leverage and root-leverage scores of a tall matrix, in Rust."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array, is_gpu_array
from thrifty._checks import check_choice, check_real, check_seed
from thrifty.coreset import _gpu
from thrifty.errors import InvalidArgumentError

Float64Array = np.ndarray[Any, np.dtype[np.float64]]


def checked_matrix(A: Any, argument: str = "A") -> Float64Array:  # noqa: N803 (the field's name)
    """``A`` as a 2-D C-contiguous float64 array (copied once unless it already is one).

    NaN or infinity, ``n < d`` and rank deficiency are checked in Rust, which names ``A``.
    """
    # A device-array (CuPy / CUDA torch) branch belongs in the caller, before this intake.
    return host_array(
        A,
        argument,
        kinds="f",
        dtype=np.float64,
        ndim=2,
        gpu_hint="the CUDA path of thrifty.coreset is not available yet; use A.cpu()",
    )


def leverage_scores(
    A: Any,  # noqa: N803 (the field's name)
    *,
    method: Literal["qr", "sketch"] = "qr",
    seed: int = 0,
    eps: float = 0.5,
) -> Float64Array:
    """Leverage scores ``tau_i = a_i^T (A^T A)^{-1} a_i`` of the rows of a tall matrix.

    Parameters
    ----------
    A : array_like, shape (n, d)
        float64 or float32 NumPy array or CPU torch tensor with ``n >= d`` and full column
        rank. Columns are normalised first (scores do not depend on column scale); ``A`` is
        rank-deficient, an error, when the smallest diagonal entry of ``R`` in its thin QR
        is at most ``max(n, d) * machine epsilon`` times the largest. A CuPy array or a
        CUDA tensor is factorised on its device (cuSOLVER QR, then the row norms of
        ``A R^-1`` in ``cuda/coreset.cu``) and the scores come back as the same kind of
        array, in float64.
    method : {"qr", "sketch"}
        ``"qr"`` (default): exact, ``||R^{-T} a_i||^2`` from a tall-skinny QR in parallel
        blocks. ``"sketch"``: the fast approximation of Drineas, Magdon-Ismail, Mahoney and
        Woodruff (arXiv 1109.3843) with a sparse OSNAP embedding ``S`` (4 nonzeros per row,
        ``8 d ln d`` rows): ``R`` from the QR of ``SA``, then squared row norms of
        ``A R^{-1} G`` for a Gaussian ``G`` with ``k = ceil(8 ln(200 n) / eps^2)`` columns
        (skipped when ``k >= d``). With probability about 0.99 every score is within
        ``[0.44 (1 - eps), 4 (1 + eps)]`` times the exact one (in practice within tens of
        percent); it pays for ``d`` well above ``k``, i.e. hundreds of columns or more.
    seed : int
        Seed of the sketch (``method="sketch"`` only).
    eps : float
        Accuracy of the Johnson-Lindenstrauss step of the sketch, in (0, 1); 0.5 by default.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        Scores in ``[0, 1]`` summing to ``d`` (``"qr"``).

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> A = np.vstack([np.eye(2), np.ones((2, 2))])
    >>> coreset.leverage_scores(A).round(6).tolist()
    [0.6, 0.6, 0.4, 0.4]
    """
    check_choice(method, "method", _native.LEVERAGE_METHODS)
    if is_gpu_array(A):
        if method != "qr":
            raise InvalidArgumentError(
                "method='sketch' runs on the CPU; pass a NumPy array, or method='qr' on the GPU",
                "method",
            )
        return _gpu.leverage_scores(A)  # type: ignore[no-any-return]
    array = checked_matrix(A)
    return _native.coreset_leverage_scores(
        array,
        method=method,
        seed=check_seed(seed),
        eps=check_real(eps, "eps", low=0.0, high=1.0, low_open=True, high_open=True),
    )


def root_leverage_scores(A: Any) -> Float64Array:  # noqa: N803 (the field's name)
    """Root leverage scores ``sqrt(tau_i)``.

    Woodruff and Yasuda (arXiv 2306.00732) show that sampling rows with probability
    proportional to ``sqrt(tau_i)`` gives an lp subspace embedding for ``1 <= p < 2`` with
    about ``d`` rows (up to polylog and ``eps^{-2}`` factors), fewer than lp sensitivity
    sampling needs in the worst case.

    Parameters
    ----------
    A : array_like, shape (n, d)
        As for :func:`leverage_scores`.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> coreset.root_leverage_scores(np.eye(2)).tolist()
    [1.0, 1.0]
    """
    return _native.coreset_root_leverage_scores(checked_matrix(A))
