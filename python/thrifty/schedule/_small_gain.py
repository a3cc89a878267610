"""Small-Gain Nash: a block metric in which simultaneous gradient play provably contracts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array
from thrifty._checks import check_real
from thrifty.errors import ShapeError

Float64Array = np.ndarray[Any, np.dtype[np.float64]]

_RK4_WEIGHTS = (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)


@dataclass(frozen=True)
class Certificate:
    """A Small-Gain Nash contraction certificate, or the reason there is none.

    Attributes
    ----------
    weights : numpy.ndarray of float64, shape (n,)
        Block weights ``w`` of the metric ``||x||_w^2 = sum_i w_i ||x_i||^2``, ``max w = 1``.
    margin : float
        ``m``: the pseudo-gradient is ``m``-strongly monotone in the ``w``-metric,
        ``<F(x) - F(y), x - y>_w >= m ||x - y||_w^2`` (0 when not certified).
    rate : float
        Per-step contraction factor of simultaneous gradient play ``x <- x - step F(x)`` at
        :attr:`step`, in the ``w``-metric: ``sqrt(1 - (m / L_w)^2)`` (1 when not certified).
        The gradient flow contracts as ``exp(-m t)``.
    max_step_euler : float
        Euler (simultaneous gradient) steps in ``(0, max_step_euler)`` contract:
        ``2 m / L_w^2``.
    max_step_rk4 : float
        RK4 steps in ``(0, max_step_rk4)`` contract, by the bound of :meth:`rk4_factor`.
    certified : bool
        Whether a certificate exists.
    reason : str
        Why not, when not certified; empty otherwise.
    step : float
        Euler's best certified step ``m / L_w^2``.
    lipschitz_weighted : float
        ``L_w``, the Lipschitz constant of the pseudo-gradient in the ``w``-metric (NaN when
        not certified).
    small_gain : float
        ``rho(D_mu^-1 L)``; a certificate exists exactly when it is below 1.
    """

    weights: Float64Array
    margin: float
    rate: float
    max_step_euler: float
    max_step_rk4: float
    certified: bool
    reason: str
    step: float
    lipschitz_weighted: float
    small_gain: float

    def euler_factor(self, step: float) -> float:
        """Certified contraction factor of one Euler step: ``sqrt(1 - 2 h m + h^2 L_w^2)``."""
        h, m, lw = check_real(step, "step", low=0.0), self.margin, self.lipschitz_weighted
        return math.sqrt(max(0.0, 1.0 - 2.0 * h * m + h * h * lw * lw))

    def rk4_factor(self, step: float) -> float:
        """Certified contraction factor of one RK4 step, for any (not only affine) game.

        With ``a = h L_w``, the stage points drift from the start by at most ``e_i`` times
        the distance, ``e = (0, a/2, (a/2)(1 + a/2), a(1 + e_3))``, so each stage keeps
        monotonicity up to ``-m (1 - e_i)^2 + L_w e_i (1 + e_i)``, and the factor is
        ``sqrt(1 + 2h sum_i b_i (-m (1 - e_i)_+^2 + L_w e_i (1 + e_i))
        + (a sum_i b_i (1 + e_i))^2)`` with RK4's weights ``b = (1, 2, 2, 1) / 6`` (our
        derivation; the paper's code uses the linear-stability guideline ``h <= 2.5 / L_w``,
        which certifies nothing for a nonlinear game).
        """
        h, m, lw = check_real(step, "step", low=0.0), self.margin, self.lipschitz_weighted
        a = h * lw
        e2 = a / 2.0
        e3 = a / 2.0 * (1.0 + e2)
        drifts = (0.0, e2, e3, a * (1.0 + e3))
        inner = 0.0
        reach = 0.0
        for b, e in zip(_RK4_WEIGHTS, drifts, strict=True):
            shrunk = max(0.0, 1.0 - e)
            inner += b * (-m * shrunk * shrunk + lw * e * (1.0 + e))
            reach += b * (1.0 + e)
        return math.sqrt(max(0.0, 1.0 + 2.0 * h * inner + a * a * reach * reach))


def small_gain_certificate(mu: Any, L: Any, *, lipschitz: Any) -> Certificate:  # noqa: N803 (the field's name)
    """Certify contraction of gradient play on a game from curvature and coupling bounds.

    Small-Gain Nash (Sharma, arXiv 2512.06791). Player ``i`` owns block ``x_i`` and the
    pseudo-gradient is ``F = (grad_1 f_1, ..., grad_n f_n)``. Assume, on the region of
    interest, ``<F_i(x) - F_i(y), x_i - y_i> >= mu_i ||x_i - y_i||^2`` when only ``x_i`` moves
    and ``||F_i(x) - F_i(y)|| <= L_ij ||x_j - y_j||`` when only ``x_j`` moves. With
    ``d_i = ||x_i - y_i||`` these give ``<F(x) - F(y), x - y>_w >= d^T S(w) d``, with
    ``S(w) = (W M + M^T W) / 2`` and the comparison matrix ``M_ii = mu_i``,
    ``M_ij = -L_ij``; the margin is ``m = lambda_min(W^-1/2 S(w) W^-1/2)``. Some ``w > 0``
    gives ``m > 0`` exactly when ``M`` is a nonsingular M-matrix, i.e. when the small-gain
    condition ``rho(D_mu^-1 L) < 1`` holds; then the game has a unique Nash equilibrium in
    the region and gradient play contracts to it, even when ``F`` is not monotone in the
    Euclidean metric (``w = 1``).

    The weights start from the M-matrix scaling ``w_i = u_i / v_i`` (``M v = 1``,
    ``M^T u = 1``), which already makes ``S(w)`` positive definite, and a pattern search in
    ``log w`` (steps halved down to 1e-6) then enlarges the margin.

    Parameters
    ----------
    mu : array_like, shape (n,)
        Per-player strong-monotonicity bounds. A ``mu_i <= 0`` is not an error: the
        certificate is refused with the reason.
    L : array_like, shape (n, n)
        Coupling bounds ``L_ij >= 0`` (player ``i``'s gradient in player ``j``'s block). The
        diagonal must be 0: a player's own curvature is ``mu``.
    lipschitz : float or array_like of shape (n,)
        A float: the Euclidean Lipschitz bound ``l`` of ``F`` (``>= max(mu)``). It also bounds
        each player's gradient in its own block, so ``L_w`` is the smaller of
        ``||W^1/2 (L + l I) W^-1/2||_2`` and ``l sqrt(max w / min w)`` (the latter alone
        gives tiny steps when the weights are spread). An array: per-player bounds ``l_i``
        (``>= mu_i``) of ``F_i`` in its own block, combined with ``L`` into
        ``K = L + diag(l)`` and ``L_w = ||W^1/2 K W^-1/2||_2``, usually tighter still.

    Notes
    -----
    Checked against the paper's code companion (github.com/AashVed/SmallGainNash,
    ``LQ_GAMES/compute_sgn_metrics.py``; the paper's text was not available to us): the
    metric, the margin (its ``alpha_*(w)``), the small-gain condition and Euler's bound
    ``2 m / L_w^2`` agree, with ``L_w`` (its ``beta``) the Lipschitz constant in the weighted
    metric. Its RK4 step is the guideline ``h <= 2.5 / L_w`` from RK4's linear stability
    region; ours (:meth:`Certificate.rk4_factor`) is a contraction bound for any game
    meeting the bounds, of the order of Euler's.

    Returns
    -------
    Certificate

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import schedule
    >>> L = np.array([[0.0, 4.0], [0.1, 0.0]])  # Euclidean-indefinite, rho = 0.63
    >>> c = schedule.small_gain_certificate([1.0, 1.0], L, lipschitz=[1.0, 1.0])
    >>> c.certified, round(c.margin, 3), round(c.small_gain, 3)
    (True, 0.368, 0.632)
    >>> schedule.small_gain_certificate([1.0, 1.0], 3 * L, lipschitz=1.0).certified
    False
    """
    mu_array = host_array(mu, "mu", kinds="fiu", ndim=1, dtype=np.float64)
    coupling = host_array(L, "L", kinds="fiu", ndim=2, dtype=np.float64)
    bound = host_array(lipschitz, "lipschitz", kinds="fiu", dtype=np.float64)
    # The rank of the argument itself: ascontiguousarray turns a scalar into shape (1,).
    rank = getattr(lipschitz, "ndim", None)
    per_block = (np.ndim(lipschitz) if rank is None else rank) == 1
    if bound.ndim > 1:
        raise ShapeError(
            f"lipschitz must be a number or a 1-D array, got shape {bound.shape}", "lipschitz"
        )
    found = _native.schedule_small_gain_certificate(
        mu_array, coupling, bound.reshape(-1), per_block
    )
    # The certificate is frozen; so are its weights.
    weights = found.weights
    weights.flags.writeable = False
    return Certificate(
        weights=weights,
        margin=found.margin,
        rate=found.rate,
        max_step_euler=found.max_step_euler,
        max_step_rk4=found.max_step_rk4,
        certified=found.certified,
        reason=found.reason,
        step=found.step,
        lipschitz_weighted=found.lipschitz_weighted,
        small_gain=found.small_gain,
    )
