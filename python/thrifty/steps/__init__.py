"""thrifty.steps: the best K-step sampling schedule for flow-matching and diffusion models.

Time runs from ``t = 0`` (noise) to ``t = 1`` (data), as in rectified flow; diffusers'
flow-matching sigmas are ``sigma = 1 - t`` (see :mod:`thrifty.steps._grid`).

* :func:`time_grid` -- uniform and EDM grids.
* :func:`cost_matrix` -- BOSS's teacher jump-error matrix (arXiv 2312.16414), O(n^2) memory.
* :func:`optimal_path`, :func:`optimal_paths` -- the exact K-jump DP, in Rust.
* :func:`schedule` -- Bellman, student-propagated, uniform and EDM candidates, refined and
  validated on held-out noise; returns a :class:`Schedule`.
* :func:`sample` -- Euler and Heun on any schedule.
* :func:`straightening_pairs`, :func:`straightening_loss` -- fine-tune towards the knots.
* :func:`bottleneck_plan`, :func:`sample_bottleneck` -- Bottleneck Sampling
  (arXiv 2503.18940): high-low-high resolution stages.

Examples
--------
>>> import numpy as np
>>> from thrifty import steps
>>> flow = steps.GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.15)
>>> plan = steps.schedule(flow.velocity, 4, n=40, samples=64, shape=(2,), progress=False)
>>> plan.times.shape, float(plan.times[0]), float(plan.times[-1])
((5,), 0.0, 1.0)
"""

from __future__ import annotations

from thrifty.steps._bottleneck import sample_bottleneck
from thrifty.steps._bottleneck_plan import BottleneckPlan, BottleneckStage, bottleneck_plan
from thrifty.steps._cost import cost_matrix
from thrifty.steps._flows import GaussianMixtureFlow
from thrifty.steps._grid import (
    shift_times,
    sigmas_from_times,
    time_grid,
    times_from_sigmas,
)
from thrifty.steps._path import is_monge, optimal_path, optimal_path_cost, optimal_paths
from thrifty.steps._sampling import sample
from thrifty.steps._schedule import Schedule, schedule
from thrifty.steps._straighten import StraighteningPairs, straightening_loss, straightening_pairs

__all__ = [
    "BottleneckPlan",
    "BottleneckStage",
    "GaussianMixtureFlow",
    "Schedule",
    "StraighteningPairs",
    "bottleneck_plan",
    "cost_matrix",
    "is_monge",
    "optimal_path",
    "optimal_path_cost",
    "optimal_paths",
    "sample",
    "sample_bottleneck",
    "schedule",
    "shift_times",
    "sigmas_from_times",
    "straightening_loss",
    "straightening_pairs",
    "time_grid",
    "times_from_sigmas",
]
