"""NumPy references for the coreset scores: the definitions, written the slow, obvious way."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def qr_leverage(a: np.ndarray) -> np.ndarray:
    """Squared row norms of Q from NumPy's reduced QR."""
    q, _ = np.linalg.qr(a, mode="reduced")
    return np.einsum("ij,ij->i", q, q)


def lewis_map(a: np.ndarray, w: np.ndarray, p: float) -> np.ndarray:
    """``T(w)_i = (a_i^T (a^T W^{1-2/p} a)^{-1} a_i)^{p/2}``, by a dense solve."""
    m = a.T @ (a * (w ** (1.0 - 2.0 / p))[:, None])
    q = np.einsum("ij,ji->i", a, np.linalg.solve(m, a.T))
    return q ** (p / 2.0)


def lewis_residual(a: np.ndarray, w: np.ndarray, p: float) -> float:
    return float(np.max(np.abs(w - lewis_map(a, w, p)) / w))


def exact_l1_sensitivity(a: np.ndarray, i: int) -> float:
    """``max a_i^T x`` subject to ``||Ax||_1 <= 1``, as a linear program in ``(x, t)``."""
    n, d = a.shape
    c = np.concatenate([-a[i], np.zeros(n)])
    eye = np.eye(n)
    upper = np.block([[a, -eye], [-a, -eye], [np.zeros((1, d)), np.ones((1, n))]])
    rhs = np.concatenate([np.zeros(2 * n), [1.0]])
    bounds = [(None, None)] * d + [(0, None)] * n
    result = linprog(c, A_ub=upper, b_ub=rhs, bounds=bounds, method="highs")
    assert result.status == 0
    return float(-result.fun)


def l1_regression_cost(a: np.ndarray, b: np.ndarray) -> float:
    """``min_x ||Ax - b||_1`` as a linear program."""
    n, d = a.shape
    c = np.concatenate([np.zeros(d), np.ones(n)])
    eye = np.eye(n)
    upper = np.block([[a, -eye], [-a, -eye]])
    rhs = np.concatenate([b, -b])
    bounds = [(None, None)] * d + [(0, None)] * n
    result = linprog(c, A_ub=upper, b_ub=rhs, bounds=bounds, method="highs")
    assert result.status == 0
    return float(result.fun)


def coherent(n: int, d: int, seed: int) -> np.ndarray:
    """Heavy-tailed rows, and a last direction that only three rows carry.

    Uniform sampling mostly misses those rows, so it distorts norms along ``e_d`` badly;
    scores that see them (leverage, Lewis) do not.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) * (1.0 + rng.pareto(1.5, size=(n, 1)))
    a[:, -1] *= 1e-3
    a[:3, -1] = 10.0 * rng.standard_normal(3) + 20.0
    return a
