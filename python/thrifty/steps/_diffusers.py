"""Setting a schedule on a diffusers scheduler exactly, without the usual traps.

Three bugs recur when custom sigmas go into diffusers:

* **N versus N + 1.** ``FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=...)`` takes
  the N sigmas *without* the terminal value and appends it; ``EulerDiscreteScheduler`` takes
  N + 1 *with* it.
* **The terminal value.** Flow matching ends at ``sigma = 0``; ``invert_sigmas`` schedulers
  end at 1.
* **The shift applied twice.** FlowMatchEuler applies its ``shift`` (or the dynamic shift
  for ``mu``) to custom sigmas too, so already-shifted sigmas get shifted again.

:func:`set_scheduler_times` passes the sigmas that, after the scheduler's own shift, land
exactly on the schedule, and replays the result to prove it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from thrifty.errors import InternalError, InvalidArgumentError
from thrifty.steps._grid import Float64Array, check_times

# float32 is what diffusers stores, so the replay check cannot ask for more.
_REPLAY_TOLERANCE = 1e-5


def _unshift_flow_match(scheduler: Any, sigmas: Float64Array, mu: float | None) -> Float64Array:
    """The sigmas that the scheduler's own shift maps onto ``sigmas``."""
    config = scheduler.config
    for flag in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        if getattr(config, flag, False):
            raise InvalidArgumentError(
                f"scheduler has {flag}=True, which replaces custom sigmas; "
                "build the scheduler with it off to use a thrifty schedule",
                "scheduler",
            )
    if getattr(config, "shift_terminal", None):
        raise InvalidArgumentError(
            "scheduler has shift_terminal set, which stretches custom sigmas; unset it",
            "scheduler",
        )
    if getattr(config, "invert_sigmas", False):
        raise InvalidArgumentError(
            "scheduler has invert_sigmas=True (Mochi), whose sigmas run the other way",
            "scheduler",
        )
    # Inverting sigma' = f(sigma) in closed form: with r = 1/sigma - 1 every diffusers shift
    # divides r by a constant (shift, exp(mu) or mu), so r = r' * constant.
    if getattr(config, "use_dynamic_shifting", False):
        if mu is None:
            raise InvalidArgumentError(
                "scheduler uses dynamic shifting, so mu must be given (as to set_timesteps)",
                "mu",
            )
        kind = getattr(config, "time_shift_type", "exponential")
        factor = math.exp(mu) if kind == "exponential" else float(mu)
    else:
        factor = float(config.shift)
    with np.errstate(divide="ignore"):
        ratio = 1.0 / sigmas - 1.0
    return np.asarray(1.0 / (1.0 + ratio * factor), dtype=np.float64)


def _is_flow_match(scheduler: Any) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch")


def set_scheduler_times(
    scheduler: Any, times: Any, *, mu: float | None = None, device: Any = None
) -> Any:
    """Set ``times`` (0 = noise, 1 = data) on ``scheduler``; return the scheduler.

    Supported: ``FlowMatchEulerDiscreteScheduler`` (sigma = 1 - t; its static or dynamic
    shift is undone first, so the schedule lands exactly) and ``EulerDiscreteScheduler``
    (sigma = (1 - t) / t, the variance-exploding sigma of the same state; t = 0 maps to the
    scheduler's largest training sigma). After ``set_timesteps`` the scheduler's sigmas are
    compared with the schedule's; a mismatch raises :class:`InternalError`.

    Examples
    --------
    >>> from diffusers import FlowMatchEulerDiscreteScheduler
    >>> from thrifty import steps
    >>> scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    >>> _ = steps.Schedule(times=[0.0, 0.3, 0.8, 1.0]).to_diffusers(scheduler)
    >>> [round(float(s), 4) for s in scheduler.sigmas]
    [1.0, 0.7, 0.2, 0.0]
    """
    t = check_times(times)
    if t[0] != 0.0 or t[-1] != 1.0:
        raise InvalidArgumentError(
            f"times must run from 0 to 1 to be a full sampling schedule, got {t[0]}..{t[-1]}",
            "times",
        )
    if _is_flow_match(scheduler):
        expected = 1.0 - t
        given = _unshift_flow_match(scheduler, expected[:-1], mu)
        scheduler.set_timesteps(sigmas=given.tolist(), device=device, mu=mu)
    elif type(scheduler).__name__ == "EulerDiscreteScheduler":
        alphas = np.asarray(scheduler.alphas_cumprod, dtype=np.float64)
        sigma_max = float(np.sqrt((1 - alphas[-1]) / alphas[-1]))
        with np.errstate(divide="ignore"):
            expected = np.where(t > 0, (1.0 - t) / np.maximum(t, 1e-300), sigma_max)
        expected = np.minimum(expected, sigma_max)
        scheduler.set_timesteps(sigmas=expected.tolist(), device=device)
    else:
        raise InvalidArgumentError(
            "scheduler must be a FlowMatchEulerDiscreteScheduler or an EulerDiscreteScheduler, "
            f"got {type(scheduler).__name__}",
            "scheduler",
        )
    got = np.asarray(scheduler.sigmas.detach().cpu().numpy(), dtype=np.float64)
    if got.shape != expected.shape or not np.allclose(
        got, expected, rtol=_REPLAY_TOLERANCE, atol=_REPLAY_TOLERANCE
    ):
        raise InternalError(
            f"{type(scheduler).__name__} ended up with sigmas {got.tolist()}, "
            f"not the schedule's {expected.tolist()}"
        )
    return scheduler
