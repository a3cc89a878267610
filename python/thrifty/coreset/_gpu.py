"""Leverage scores and Lewis weights of CuPy arrays and CUDA tensors, on the device.

The QR is CholeskyQR2 in cuBLAS GEMMs, or cuSOLVER's Householder QR where CholeskyQR2 would
lose orthogonality; the row norms of Q run in ``cuda/coreset.cu``. The
iteration, the rank test and the stopping rule are the CPU path's (``thrifty_coreset``), so
both return the same weights to rounding. Results come back as the caller's kind of array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty import _cuda
from thrifty._arrays import is_torch_tensor
from thrifty._extras import require
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError

_THREADS = 256  # 8 warps per block, one row per warp
_MAX_BLOCKS = 65535


def _device_matrix(a: Any) -> Any:
    """``a`` as a C-contiguous float64 CuPy matrix, checked like the CPU path checks it."""
    cupy = require("cupy")
    if is_torch_tensor(a):
        a = cupy.from_dlpack(a.detach().contiguous())
    if a.ndim != 2:
        raise ShapeError(f"A must be 2-D (n, d), got shape {tuple(a.shape)}", "A")
    n, d = (int(s) for s in a.shape)
    if d == 0 or n < d:
        raise ShapeError(
            f"A must have at least as many rows as columns (n >= d >= 1), got shape ({n}, {d})", "A"
        )
    a = cupy.ascontiguousarray(a, dtype=cupy.float64)
    if not bool(cupy.isfinite(a).all()):
        raise NonFiniteError("A must be finite, got NaN or infinity", "A")
    # Scores do not depend on column scale, but the rank test does: normalise, as on the CPU.
    norms = _column_norms(a)
    return a / cupy.where(norms > 0, norms, 1.0)


def _column_norms(a: Any) -> Any:
    """Column norms from the Gram diagonal: one GEMM, against about 80x longer for CuPy's
    strided reduction over axis 0 (H200, 10^6 x 50). A column whose sum of squares leaves
    the float64 range (entries beyond about 1e154 or below 1e-154) is summed again, scaled
    by its largest magnitude, as the CPU path does."""
    cupy = require("cupy")
    squares = cupy.diag(a.T @ a)
    norms = cupy.sqrt(squares)
    outside = ~(cupy.isfinite(squares) & (squares >= np.finfo(np.float64).tiny))
    for j in np.flatnonzero(cupy.asnumpy(outside)):
        column = a[:, j]
        largest = cupy.abs(column).max()
        norms[j] = largest * cupy.sqrt(((column / largest) ** 2).sum()) if largest > 0 else 0.0
    return norms


def _like(template: Any, array: Any) -> Any:
    if is_torch_tensor(template):
        return require("torch").from_dlpack(array)
    return array


def row_sq_norms(q: Any) -> Any:
    """Squared norm of each row of a C-contiguous float32/float64 CuPy matrix."""
    cupy = require("cupy")
    rows, cols = (int(s) for s in q.shape)
    out = cupy.empty(rows, dtype=q.dtype)
    if rows == 0:
        return out
    suffix = "f64" if q.dtype == cupy.float64 else "f32"
    kernel = _cuda.function("coreset", f"coreset_row_sq_norms_{suffix}")
    warps = _THREADS // 32
    blocks = min(-(-rows // warps), _MAX_BLOCKS)
    kernel((blocks,), (_THREADS,), (q, np.int64(rows), np.int32(cols), out))
    return out


# CholeskyQR2 stays orthogonal to rounding while cond(A) is below about 1e7 (Yamamoto et
# al., ETNA 44, 2015); its second Gram matrix being this close to I is the test that it is.
_CHOLESKY_QR_ORTHOGONALITY = 0.1


def _upper_cholesky(gram: Any) -> Any | None:
    """``R`` with ``R^T R = gram``, or None where the Cholesky factorisation fails."""
    cupy = require("cupy")
    try:
        lower = cupy.linalg.cholesky(gram)
    except np.linalg.LinAlgError:  # NumPy raises; CuPy by default returns NaNs instead
        return None
    return lower.T if bool(cupy.isfinite(lower).all()) else None


def _times_inverse(a: Any, r: Any) -> Any:
    linalg = require("cupyx.scipy.linalg")
    cupy = require("cupy")
    return cupy.ascontiguousarray(a @ linalg.solve_triangular(r, cupy.eye(r.shape[0])))


def _cholesky_qr2(a: Any) -> Any | None:
    """``Q = A R^-1`` by CholeskyQR2: two Gram-matrix passes, all matrix products.

    On a tall matrix this is a few GEMMs against cuSOLVER's Householder QR, which works
    column by column. It is only trusted where the second Gram matrix shows ``Q`` orthogonal;
    otherwise (ill-conditioned or rank-deficient ``A``) the caller falls back to Householder.
    """
    cupy = require("cupy")
    first = _upper_cholesky(a.T @ a)
    if first is None:
        return None
    q = _times_inverse(a, first)
    gram = q.T @ q
    if not float(cupy.abs(gram - cupy.eye(gram.shape[0])).max()) < _CHOLESKY_QR_ORTHOGONALITY:
        return None
    second = _upper_cholesky(gram)
    return None if second is None else _times_inverse(q, second)


def _householder_basis(a: Any) -> Any:
    """``A R^-1`` for the ``R`` of cuSOLVER's Householder QR, after the CPU path's rank test.

    This is the ``Q`` of the QR, but formed as the CPU path forms it: an exactly zero row of
    ``a`` stays exactly zero (Householder's ``Q`` would give it entries near 1e-17, which
    Lewis weights raise to negative powers).
    """
    cupy = require("cupy")
    r = cupy.linalg.qr(a, mode="r")
    diagonal = cupy.abs(cupy.diag(r))
    largest = float(diagonal.max())
    smallest = float(diagonal.min())
    rank_tol = max(int(a.shape[0]), int(a.shape[1])) * float(np.finfo(np.float64).eps)
    if not largest > 0 or smallest <= rank_tol * largest:
        raise InvalidArgumentError(
            f"A is rank-deficient: the smallest |R_jj| of its QR is {smallest:.3g}, at most "
            f"{rank_tol:.3g} times the largest ({largest:.3g}); drop dependent columns",
            "A",
        )
    return _times_inverse(a, r)


def _orthonormal_basis(a: Any) -> Any:
    """An orthonormal basis of the columns of ``a`` as ``A R^-1`` (zero rows stay zero).

    CholeskyQR2 where it is accurate, else Householder with the CPU path's rank test: a
    matrix that passes CholeskyQR2's orthogonality test has cond(A) far below the rank
    threshold, so both routes accept and refuse the same matrices.
    """
    q = _cholesky_qr2(a)
    return _householder_basis(a) if q is None else q


def leverage_scores(a: Any) -> Any:
    """Leverage scores of a device matrix: the squared row norms of Q in A = QR."""
    matrix = _device_matrix(a)
    return _like(a, row_sq_norms(_orthonormal_basis(matrix)))


def lewis_weights(a: Any, p: float, iters: int, tol: float) -> Any:
    """lp Lewis weights of a device matrix, by the CPU path's iteration and stopping rule.

    Each step takes the leverage scores tau of ``W^(1/2 - 1/p) A``, so that
    ``a_i^T (A^T W^(1-2/p) A)^-1 a_i = tau_i / w_i^(1-2/p)``. Up to p = 2 the step is Cohen
    and Peng's ``w <- (tau / w^(1-2/p))^(p/2)``; above p = 2 it is the damped ``w <- tau``
    (see ``thrifty.coreset.lewis_weights``). The iterate whose residual passes is returned.
    """
    cupy = require("cupy")
    matrix = _device_matrix(a)
    n, d = (int(s) for s in matrix.shape)
    w = cupy.full(n, d / n, dtype=cupy.float64)
    exponent = 0.5 - 1.0 / p
    residual = float("inf")
    for _ in range(iters):
        positive = w > 0
        # A zero row gets weight 0 and stays there; w^(negative) must not turn it into NaN.
        scale = cupy.where(positive, cupy.power(cupy.where(positive, w, 1.0), exponent), 0.0)
        tau = row_sq_norms(_orthonormal_basis(matrix * scale[:, None]))
        forms = cupy.where(positive, tau / cupy.where(positive, scale * scale, 1.0), 0.0)
        image = cupy.power(forms, p / 2.0)
        gaps = cupy.where(positive, cupy.abs(w - image) / cupy.where(positive, w, 1.0), 0.0)
        residual = float(gaps.max())
        if residual <= tol:
            return _like(a, w)
        w = tau if p > 2 else image
    raise InvalidArgumentError(
        f"Lewis weights for p = {p} did not reach tol = {tol} in {iters} iterations "
        f"(residual {residual:.3e}); raise iters or tol",
        "iters",
    )
