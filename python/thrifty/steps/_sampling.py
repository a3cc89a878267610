"""Solving the probability-flow ODE on a given schedule."""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy.typing as npt

from thrifty._checks import check_choice
from thrifty.steps._grid import check_times
from thrifty.steps._velocity import Velocity, check_state, check_velocity, evaluate, inference

Solver = Literal["euler", "heun"]


def sample(
    velocity: Velocity,
    noise: Any,
    times: npt.ArrayLike,
    *,
    solver: Solver = "euler",
    return_trajectory: bool = False,
) -> Any:
    """Integrate ``dx/dt = velocity(x, t)`` from ``times[0]`` to ``times[-1]``.

    Parameters
    ----------
    velocity : callable
        ``(x, t) -> v`` on NumPy arrays or torch tensors; ``t`` has shape ``(batch,)``.
    noise : array or tensor, shape (batch, *state)
        The state at ``times[0]`` (noise at ``t = 0`` under thrifty's convention).
    times : array, shape (K + 1,)
        Strictly increasing times, for example ``Schedule.times``.
    solver : {"euler", "heun"}
        Euler takes ``K`` velocity evaluations; Heun's second-order method takes ``2K``.
    return_trajectory : bool
        Also return the list of the ``K + 1`` states.

    Returns
    -------
    The state at ``times[-1]`` in ``noise``'s framework (and the trajectory if asked).

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> x0 = np.zeros((3, 2))
    >>> steps.sample(lambda x, t: np.ones_like(x), x0, [0.0, 0.5, 1.0]).tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    check_velocity(velocity)
    t = check_times(times)
    x = check_state(noise, "noise")
    method = check_choice(solver, "solver", ("euler", "heun"))
    trajectory = [x]
    with inference(x):
        for t0, t1 in itertools.pairwise(t):
            dt = float(t1 - t0)
            v0 = evaluate(velocity, x, float(t0))
            if method == "euler":
                x = x + dt * v0
            else:
                predicted = x + dt * v0
                v1 = evaluate(velocity, predicted, float(t1))
                x = x + (0.5 * dt) * (v0 + v1)
            if return_trajectory:
                trajectory.append(x)
    if return_trajectory:
        return x, trajectory
    return x
