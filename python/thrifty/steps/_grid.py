"""Time grids, and the time convention every part of :mod:`thrifty.steps` shares.

**Convention.** ``t`` runs over ``[0, 1]`` with ``t = 0`` the noise and ``t = 1`` the data,
as in rectified flow: ``x_t = t * x_data + (1 - t) * x_noise`` and the velocity is
``dx/dt``. diffusers' flow-matching schedulers count the other way, with
``sigma = 1 - t``; :func:`sigmas_from_times` and :func:`times_from_sigmas` convert.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from thrifty._arrays import host_array
from thrifty._checks import check_choice, check_length, check_positive
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError

GridKind = Literal["uniform", "edm"]

Float64Array = np.ndarray[Any, np.dtype[np.float64]]


def time_grid(
    n: int,
    kind: GridKind = "uniform",
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    shift: float = 1.0,
) -> Float64Array:
    """``n + 1`` strictly increasing times from 0 (noise) to 1 (data).

    Parameters
    ----------
    n : int
        Number of steps; the grid has ``n + 1`` nodes.
    kind : {"uniform", "edm"}
        ``"uniform"`` spaces the nodes evenly. ``"edm"`` uses the Karras et al. spacing
        (arXiv 2206.00364): sigmas ``(sigma_max^(1/rho) + i/n (sigma_min^(1/rho) -
        sigma_max^(1/rho)))^rho``, mapped to rectified-flow time by ``t = 1 / (1 + sigma)``
        and stretched affinely so that the grid still starts at 0 and ends at 1. It puts most
        nodes near the data end.
    sigma_min, sigma_max, rho : float
        The EDM parameters; the defaults are the paper's (0.002, 80, 7).
    shift : float
        The resolution-dependent time shift of SD3 (arXiv 2403.03206) applied to
        ``sigma = 1 - t``: ``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``. 1 means
        none. Apply a shift here *or* in your scheduler, never in both.

    Examples
    --------
    >>> from thrifty import steps
    >>> steps.time_grid(4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> g = steps.time_grid(10, "edm")
    >>> bool(g[0] == 0.0 and g[-1] == 1.0 and (g[1:] - g[:-1] > 0).all())
    True
    """
    n = check_length(n, "n", minimum=1)
    spacing = check_choice(kind, "kind", ("uniform", "edm"))
    shift = check_positive(shift, "shift")
    position = np.arange(n + 1, dtype=np.float64) / n
    if spacing == "uniform":
        t = position
    else:
        sigma_min = check_positive(sigma_min, "sigma_min")
        sigma_max = check_positive(sigma_max, "sigma_max")
        if not sigma_min < sigma_max:
            raise InvalidArgumentError(
                f"need 0 < sigma_min < sigma_max, got {sigma_min!r} and {sigma_max!r}",
                "sigma_min",
            )
        rho = check_positive(rho, "rho")
        with np.errstate(over="ignore", invalid="ignore"):
            # A tiny rho overflows these to infinity; the grid check below refuses that.
            lo, hi = np.float64(sigma_min) ** (1 / rho), np.float64(sigma_max) ** (1 / rho)
            sigma = (hi + position * (lo - hi)) ** rho
        t = 1.0 / (1.0 + sigma)
        span = t[-1] - t[0]
        t = (t - t[0]) / span if span > 0 else t
    if shift != 1.0:
        t = shift_times(t, shift)
    t[0], t[-1] = 0.0, 1.0
    if not (np.diff(t) > 0).all():
        # Extreme EDM parameters or shifts merge neighbouring nodes in float64.
        argument = "shift" if shift != 1.0 else "rho" if spacing == "edm" else "n"
        raise InvalidArgumentError(
            f"the {spacing} grid of {n} steps is not strictly increasing in float64 with these "
            f"parameters (sigma_min={sigma_min!r}, sigma_max={sigma_max!r}, rho={rho!r}, "
            f"shift={shift!r})",
            argument,
        )
    return t


def shift_times(times: npt.ArrayLike, shift: float) -> Float64Array:
    """Apply the SD3 time shift to ``sigma = 1 - t`` and return times again.

    Examples
    --------
    >>> from thrifty import steps
    >>> steps.shift_times([0.0, 0.5, 1.0], 3.0).tolist()
    [0.0, 0.25, 1.0]
    """
    shift = check_positive(shift, "shift")
    t = host_array(times, "times", dtype=np.float64)
    if not np.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise InvalidArgumentError(f"times must lie in [0, 1], got {t.tolist()}", "times")
    sigma = 1.0 - t
    # sigma' = s sigma / (1 + (s - 1) sigma), with the denominator written as a sum of
    # non-negative terms: the textbook form cancels to 0 at sigma = 1 for a tiny shift.
    shifted = shift * sigma / (shift * sigma + (1.0 - sigma))
    return np.asarray(1.0 - shifted, dtype=np.float64)


def check_times(times: Any, argument: str = "times") -> Float64Array:
    """Validate a schedule: 1-D, at least two nodes, finite, strictly increasing."""
    t = host_array(times, argument, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
        raise ShapeError(
            f"{argument} must be 1-D with at least 2 nodes, got shape {t.shape}", argument
        )
    if not np.isfinite(t).all():
        raise NonFiniteError(f"{argument} must be finite, got {t.tolist()}", argument)
    if not (np.diff(t) > 0).all():
        raise InvalidArgumentError(
            f"{argument} must be strictly increasing, got {t.tolist()}", argument
        )
    return t


def sigmas_from_times(times: npt.ArrayLike) -> Float64Array:
    """diffusers flow-matching sigmas (``sigma = 1 - t``), from noise (1) to data (0).

    Examples
    --------
    >>> from thrifty import steps
    >>> steps.sigmas_from_times([0.0, 0.5, 1.0]).tolist()
    [1.0, 0.5, 0.0]
    """
    return 1.0 - check_times(times)


def times_from_sigmas(sigmas: npt.ArrayLike) -> Float64Array:
    """Inverse of :func:`sigmas_from_times`; ``sigmas`` must decrease strictly."""
    s = host_array(sigmas, "sigmas", dtype=np.float64)
    return check_times(1.0 - s, "sigmas")
