"""The BOSS teacher cost matrix: how far each one-step Euler jump lands from the teacher."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from thrifty import _native
from thrifty._arrays import is_gpu_array
from thrifty._progress import progress_bar
from thrifty.errors import InvalidArgumentError, ShapeError
from thrifty.steps._grid import Float64Array, check_times
from thrifty.steps._velocity import (
    Velocity,
    array_like,
    batch_size_or,
    check_state,
    check_velocity,
    empty,
    evaluate,
    inference,
    to_host,
)

Metric = Literal["l2", "l1"] | Callable[[Any, Any], Any]

DEFAULT_MAX_MEMORY = 512 * 2**20


def cost_matrix(
    velocity: Velocity,
    grid: Any,
    noise: Any,
    *,
    metric: Metric = "l2",
    batch_size: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: bool = True,
) -> Float64Array:
    """The mean error of every one-step Euler jump against the teacher trajectory (BOSS).

    The teacher is the ``n``-step Euler solution on ``grid`` from each noise. The cost of
    the jump ``i -> j`` is the mean over samples of ``err(x_i + (t_j - t_i) v(x_i, t_i) -
    x_j)``. Every jump reuses the velocity of its start node, so each sample costs exactly
    ``n`` velocity evaluations.

    Memory is ``O(n^2 + batch * n * state)``: one batch's trajectory is held at a time, and
    the jump errors are reduced on the fly (in Rust on the CPU, in a CUDA kernel for GPU
    tensors), so no ``(n, n, state)`` array is ever built. With ``batch_size=None`` the
    batch is sized so that one trajectory fits ``max_memory`` bytes, which keeps the peak
    flat in both ``n`` and the number of samples.

    Parameters
    ----------
    velocity : callable
        ``(x, t) -> v`` on NumPy arrays or torch tensors (CPU or CUDA); ``t`` has shape
        ``(batch,)``.
    grid : array, shape (n + 1,)
        Strictly increasing times, see :func:`time_grid`.
    noise : array or tensor, shape (samples, *state)
    metric : {"l2", "l1"} or callable
        ``"l2"`` is the Euclidean norm of the residual per sample, ``"l1"`` the sum of its
        absolute values. A callable ``metric(prediction, target) -> errors`` receives two
        arrays of shape ``(m, *state)`` and returns ``m`` per-sample errors; use it for
        perceptual metrics such as LPIPS.
    batch_size : int, optional
        Samples per teacher batch.
    max_memory : int
        Bytes one batch's trajectory may take when ``batch_size`` is None.
    progress : bool
        Show a tqdm bar over velocity evaluations.

    Returns
    -------
    numpy.ndarray of float64, shape (n + 1, n + 1)
        Upper triangular (zero on and below the diagonal).

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> flow = steps.GaussianMixtureFlow.ring(modes=4, radius=2.0, std=0.3)
    >>> noise = np.random.default_rng(0).standard_normal((64, 2))
    >>> c = steps.cost_matrix(flow.velocity, steps.time_grid(8), noise, progress=False)
    >>> c.shape, bool((np.tril(c) == 0).all())
    ((9, 9), True)
    >>> # A jump to the next node is the teacher's own step: it costs nothing.
    >>> bool(np.allclose(np.diag(c, 1), 0.0)), bool(c[0, 8] > c[0, 4] > 0)
    (True, True)
    """
    check_velocity(velocity)
    times = check_times(grid, "grid")
    x = check_state(noise, "noise")
    check_metric(metric)
    n = times.size - 1
    samples = int(x.shape[0])
    state_size = math.prod(int(s) for s in x.shape[1:])
    batch = _batch_size(batch_size, samples, n, state_size, x.dtype.itemsize, max_memory)
    total = np.zeros((n + 1, n + 1), dtype=np.float64)
    batches = range(0, samples, batch)
    with progress_bar(len(batches) * n, "cost matrix", progress) as bar, inference(x):
        for start in batches:
            chunk = x[start : start + batch]
            states, velocities = _teacher(velocity, chunk, times, bar)
            total += _jump_error_sums(states, velocities, times, metric)
            # Let the next batch reuse this memory rather than stack on top of it.
            del states, velocities
    return np.triu(total / samples, 1)


def _batch_size(
    batch_size: int | None, samples: int, n: int, state: int, itemsize: int, budget: int
) -> int:
    """One trajectory of states and velocities per sample must fit ``budget`` bytes."""
    per_sample = (2 * n + 1) * state * itemsize
    return batch_size_or(batch_size, samples, budget // per_sample)


def _teacher(velocity: Velocity, x0: Any, times: Float64Array, bar: Any) -> tuple[Any, Any]:
    """The Euler teacher trajectory of one batch and the velocity at each of its nodes."""
    n = times.size - 1
    states = empty(x0, (n + 1, *x0.shape))
    velocities = empty(x0, (n, *x0.shape))
    states[0] = x0
    for i in range(n):
        v = evaluate(velocity, states[i], float(times[i]))
        velocities[i] = v
        states[i + 1] = states[i] + float(times[i + 1] - times[i]) * v
        bar.update(1)
    return states, velocities


def _flat(a: Any) -> Any:
    return a.reshape(a.shape[0], a.shape[1], -1)


def check_metric(metric: Any) -> None:
    """A metric is a name the core knows or a callable."""
    if not (callable(metric) or (isinstance(metric, str) and metric in _native.METRICS)):
        names = ", ".join(map(repr, _native.METRICS))
        raise InvalidArgumentError(
            f"metric must be one of {names} or a callable, got {metric!r}", "metric"
        )


def jump_error_sums(
    starts: Any, velocities: Any, targets: Any, times: Float64Array, metric: Metric
) -> Float64Array:
    """``out[i][j] = sum_b err(starts[i, b] + (t_j - t_i) velocities[i, b] - targets[j, b])``.

    ``starts`` and ``velocities`` have shape ``(n, batch, *state)``, ``targets``
    ``(n + 1, batch, *state)``; only ``i < j`` is filled. The teacher cost uses the
    teacher's own states as both starts and targets; the student-propagated DP starts from
    the student's states instead.
    """
    if callable(metric):
        return _callable_sums(starts, velocities, targets, times, metric)
    if is_gpu_array(starts):
        from thrifty.steps._gpu import jump_error_sums_gpu

        return jump_error_sums_gpu(_flat(starts), _flat(velocities), _flat(targets), times, metric)
    return np.asarray(
        _native.jump_errors(
            np.ascontiguousarray(to_host(_flat(starts))),
            np.ascontiguousarray(to_host(_flat(velocities))),
            np.ascontiguousarray(to_host(_flat(targets))),
            times,
            metric,
        )
    )


def _jump_error_sums(
    states: Any, velocities: Any, times: Float64Array, metric: Metric
) -> Float64Array:
    return jump_error_sums(states[:-1], velocities, states, times, metric)


def _callable_sums(
    starts: Any,
    velocities: Any,
    targets: Any,
    times: Float64Array,
    metric: Callable[[Any, Any], Any],
) -> Float64Array:
    """One metric call per start node, batched over every target node after it."""
    n = times.size - 1
    batch = int(starts.shape[1])
    state_shape = tuple(starts.shape[2:])
    out = np.zeros((n + 1, n + 1), dtype=np.float64)
    for i in range(n):
        later = targets[i + 1 :]
        steps = times[i + 1 :] - times[i]
        dt = array_like(starts, steps).reshape(-1, *([1] * (starts.ndim - 1)))
        predictions = starts[i][None] + dt * velocities[i][None]
        errors = metric(predictions.reshape(-1, *state_shape), later.reshape(-1, *state_shape))
        errors = to_host(errors).astype(np.float64)
        if errors.shape != (later.shape[0] * batch,):
            raise ShapeError(
                f"metric must return one error per sample, shape ({later.shape[0] * batch},), "
                f"got {errors.shape}",
                "metric",
            )
        out[i, i + 1 :] = errors.reshape(-1, batch).sum(axis=1)
    return out
