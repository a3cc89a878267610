"""BOSS stage 2: fine-tune a velocity field towards the jumps of its chosen schedule.

Once BOSS (arXiv 2312.16414) has chosen ``K`` knots ``p_0 = 0 < ... < p_K = N`` on a fine
grid, the pretrained velocity is fine-tuned so that one Euler step from each knot lands on
the teacher's state at the next: the loss is
``|| v(x_i, t_i) - (x_j - x_i) / (t_j - t_i) ||^2`` with ``x_i, x_j`` the teacher's states at
consecutive knots and the teacher the ``N``-step Euler solution with the frozen velocity.
:func:`straightening_pairs` rolls the teacher once and keeps those pairs;
:func:`straightening_loss` is the loss to minimise over them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from thrifty._arrays import host_array, is_cupy_array, is_torch_tensor
from thrifty._checks import check_choice, check_int
from thrifty._extras import require
from thrifty._progress import progress_bar
from thrifty.errors import DTypeError, InvalidArgumentError, ShapeError
from thrifty.steps._grid import Float64Array, check_times
from thrifty.steps._velocity import (
    Velocity,
    array_like,
    batch_size_or,
    check_state,
    empty,
    evaluate,
    inference,
)

__all__ = ["StraighteningPairs", "straightening_loss", "straightening_pairs"]

Int64Array = np.ndarray[Any, np.dtype[np.int64]]
Reduction = Literal["mean", "sum", "none"]


@dataclass(frozen=True, eq=False)
class StraighteningPairs:
    """Teacher states, times and jump targets at the knots, from :func:`straightening_pairs`.

    The pairs are ordered knot-major: pair ``j * samples + b`` is the jump from knot ``j``
    of sample ``b``. Arrays are in the noise's framework, dtype and device.

    Attributes
    ----------
    states : array or tensor, shape (K * samples, *state)
        The teacher's state ``x_i`` at the start of each jump.
    times : array or tensor, shape (K * samples,)
        The jump's start time ``t_i``.
    targets : array or tensor, shape (K * samples, *state)
        The straight-line velocity ``(x_j - x_i) / (t_j - t_i)`` to the next knot.
    knots : numpy.ndarray of int64, shape (K + 1,)
        The knots' node indices into ``grid``.
    grid : numpy.ndarray of float64, shape (N + 1,)
        The fine grid the teacher ran on.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> noise = np.random.default_rng(0).standard_normal((5, 2))
    >>> pairs = steps.straightening_pairs(lambda x, t: -x, noise, steps.time_grid(4), [0, 2, 4])
    >>> len(pairs), pairs.jumps, pairs.times.tolist()[::5]
    (10, 2, [0.0, 0.5])
    """

    states: Any
    times: Any
    targets: Any
    knots: Int64Array
    grid: Float64Array

    def __len__(self) -> int:
        return int(self.states.shape[0])

    @property
    def jumps(self) -> int:
        """``K``, the number of jumps (knots minus one)."""
        return int(self.knots.size - 1)

    def to_dataset(self) -> Any:
        """A ``torch.utils.data.TensorDataset`` of ``(states, times, targets)``.

        NumPy pairs are wrapped without copying. Each DataLoader batch can be passed to
        :func:`straightening_loss` as it is.
        """
        torch = require("torch")
        data = require("torch.utils.data")
        tensors = [
            a if is_torch_tensor(a) else torch.from_numpy(np.ascontiguousarray(a))
            for a in (self.states, self.times, self.targets)
        ]
        return data.TensorDataset(*tensors)

    def batches(
        self, batch_size: int, *, shuffle: bool = True, seed: int = 0
    ) -> Iterator[tuple[Any, Any, Any]]:
        """Mini-batches ``(states, times, targets)`` over one pass, for a training loop.

        The order is a ``numpy.random.default_rng(seed)`` permutation when ``shuffle``, so
        NumPy and torch pairs are visited in the same order for the same seed.
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        count = len(self)
        order = np.random.default_rng(seed).permutation(count) if shuffle else np.arange(count)
        for start in range(0, count, int(batch_size)):
            chosen = order[start : start + int(batch_size)]
            if is_torch_tensor(self.states):
                chosen = require("torch").from_numpy(chosen).to(self.states.device)
            elif is_cupy_array(self.states):
                import cupy

                chosen = cupy.asarray(chosen)
            yield self.states[chosen], self.times[chosen], self.targets[chosen]


def straightening_pairs(
    velocity: Velocity,
    noise: Any,
    grid: Any,
    knots: Any,
    *,
    batch_size: int | None = None,
    progress: bool = False,
) -> StraighteningPairs:
    """Roll the teacher on the fine grid and keep its jumps between consecutive knots.

    The teacher is the ``N``-step Euler solution of the frozen ``velocity`` on ``grid``
    (BOSS, arXiv 2312.16414), run without autograd: exactly ``N`` evaluations per sample.
    Only the states at the knots are kept, so beyond the returned pairs the memory is one
    batch's current state.

    Parameters
    ----------
    velocity : callable
        The frozen pretrained ``(x, t) -> v`` on NumPy arrays or torch tensors; ``t`` has
        shape ``(batch,)``.
    noise : array or tensor, shape (samples, *state)
        Floating-point noise at ``t = 0``.
    grid : array, shape (N + 1,)
        The fine grid, strictly increasing, for example ``Schedule.grid`` or
        :func:`time_grid`.
    knots : array of int, shape (K + 1,), or a Schedule
        Node indices into ``grid``, strictly increasing from 0 to ``N``; anything with an
        ``indices`` attribute (a :class:`Schedule`) is read through it.
    batch_size : int, optional
        Samples per teacher batch (all at once when None); it bounds the velocity
        network's activation memory.
    progress : bool
        Show a tqdm bar over velocity evaluations.

    Returns
    -------
    StraighteningPairs
        ``K * samples`` pairs, knot-major.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> flow = steps.GaussianMixtureFlow.ring(modes=4, radius=2.0, std=0.3)
    >>> noise = np.random.default_rng(0).standard_normal((16, 2))
    >>> pairs = steps.straightening_pairs(flow.velocity, noise, steps.time_grid(8), [0, 3, 8])
    >>> len(pairs), pairs.states.shape, pairs.times[::16].tolist()
    (32, (32, 2), [0.0, 0.375])
    >>> float(steps.straightening_loss(flow.velocity, pairs)) > 0
    True
    """
    times = check_times(grid, "grid")
    n = times.size - 1
    nodes = _check_knots(knots, n)
    x = check_state(noise, "noise")
    if not callable(velocity):
        raise InvalidArgumentError(f"velocity must be callable, got {velocity!r}", "velocity")
    samples = int(x.shape[0])
    batch = batch_size_or(batch_size, samples, samples)
    jumps = nodes.size - 1
    state_shape = tuple(int(d) for d in x.shape[1:])
    states = empty(x, (jumps, samples, *state_shape))
    targets = empty(x, (jumps, samples, *state_shape))
    batches = range(0, samples, batch)
    with progress_bar(len(batches) * n, "straightening pairs", progress) as bar, inference(x):
        for start in batches:
            stop = min(start + batch, samples)
            current = x[start:stop]
            states[0, start:stop] = current
            jump = 0
            for i in range(n):
                # The same update as thrifty.steps.sample, so the pairs sit exactly on the
                # trajectory that sample() would produce on the fine grid.
                v = evaluate(velocity, current, float(times[i]))
                current = current + float(times[i + 1] - times[i]) * v
                bar.update(1)
                if i + 1 == nodes[jump + 1]:
                    span = float(times[nodes[jump + 1]] - times[nodes[jump]])
                    targets[jump, start:stop] = (current - states[jump, start:stop]) / span
                    jump += 1
                    if jump < jumps:
                        states[jump, start:stop] = current
    start_times = np.repeat(times[nodes[:-1]], samples)
    return StraighteningPairs(
        states=states.reshape(jumps * samples, *state_shape),
        times=array_like(x, start_times),
        targets=targets.reshape(jumps * samples, *state_shape),
        knots=nodes,
        grid=times,
    )


def straightening_loss(model: Velocity, pairs: Any, *, reduction: Reduction = "mean") -> Any:
    """The straightening loss ``|| model(x_i, t_i) - (x_j - x_i) / (t_j - t_i) ||^2``.

    The squared error is summed over each state's dimensions and then reduced over the
    pairs, so ``"mean"`` is the mean per-sample squared distance (BOSS, arXiv 2312.16414).
    With a torch model it is a tensor with a graph to the model's parameters: call
    ``.backward()`` on it.

    Parameters
    ----------
    model : callable
        The velocity being fine-tuned, ``(x, t) -> v`` with ``t`` of shape ``(batch,)``.
    pairs : StraighteningPairs or (states, times, targets)
        All pairs, or one mini-batch of them (as :meth:`StraighteningPairs.batches` or a
        DataLoader over :meth:`StraighteningPairs.to_dataset` yields).
    reduction : {"mean", "sum", "none"}
        Over the pairs; ``"none"`` returns one loss per pair.

    Returns
    -------
    A torch scalar (or vector for ``"none"``) for torch pairs, a ``numpy.float64`` (or
    array) for NumPy ones.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> states, times = np.zeros((4, 2)), np.zeros(4)
    >>> targets = np.ones((4, 2))
    >>> float(steps.straightening_loss(lambda x, t: np.ones_like(x), (states, times, targets)))
    0.0
    >>> float(steps.straightening_loss(lambda x, t: np.zeros_like(x), (states, times, targets)))
    2.0
    """
    reduced = check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if not callable(model):
        raise InvalidArgumentError(f"model must be callable, got {model!r}", "model")
    states, times, targets = _unpack(pairs)
    prediction = model(states, times)
    if type(prediction) is not type(states) and not (
        is_torch_tensor(prediction) and is_torch_tensor(states)
    ):
        raise DTypeError(
            f"model must return the same kind of array as its input ({type(states).__name__}), "
            f"got {type(prediction).__name__}",
            "model",
        )
    if tuple(prediction.shape) != tuple(states.shape):
        raise ShapeError(
            f"model must return the shape of its input {tuple(states.shape)}, "
            f"got {tuple(prediction.shape)}",
            "model",
        )
    count = int(states.shape[0])
    squared = ((prediction - targets) ** 2).reshape(count, -1)
    per_pair = squared.sum(dim=1) if is_torch_tensor(squared) else squared.sum(axis=1)
    if reduced == "none":
        return per_pair
    total = per_pair.mean() if reduced == "mean" else per_pair.sum()
    if is_torch_tensor(total) or is_cupy_array(total):
        return total
    return np.float64(total)


def _check_knots(knots: Any, n: int) -> Int64Array:
    indices = getattr(knots, "indices", None)
    # A torch tensor has an ``indices`` method (for sparse layouts); a Schedule has an array.
    if indices is not None and not callable(indices):
        knots = indices
    nodes = host_array(knots, "knots", kinds="iu", dtype=np.int64)
    if nodes.ndim != 1 or nodes.size < 2:
        raise ShapeError(
            f"knots must be 1-D with at least 2 node indices, got shape {nodes.shape}", "knots"
        )
    if nodes[0] != 0:
        raise InvalidArgumentError(
            f"knots must start at node 0 (the noise), got {nodes.tolist()}", "knots"
        )
    if nodes[-1] != n:
        raise InvalidArgumentError(
            f"knots must end at node {n}, the last node of grid, got {nodes.tolist()}", "knots"
        )
    if not (np.diff(nodes) > 0).all():
        raise InvalidArgumentError(
            f"knots must be strictly increasing, got {nodes.tolist()}", "knots"
        )
    kept: Int64Array = nodes.copy()
    kept.setflags(write=False)
    return kept


def _unpack(pairs: Any) -> tuple[Any, Any, Any]:
    if isinstance(pairs, StraighteningPairs):
        return pairs.states, pairs.times, pairs.targets
    if not isinstance(pairs, (tuple, list)) or len(pairs) != 3:
        raise InvalidArgumentError(
            "pairs must be StraighteningPairs or a (states, times, targets) batch, "
            f"got {type(pairs).__name__}",
            "pairs",
        )
    states, times, targets = pairs
    check_state(states, "pairs")
    for part in (times, targets):
        if type(part) is not type(states) and not (
            is_torch_tensor(part) and is_torch_tensor(states)
        ):
            raise DTypeError(
                f"pairs must hold three arrays of one kind ({type(states).__name__}), "
                f"got {type(part).__name__}",
                "pairs",
            )
    count = int(states.shape[0])
    if tuple(targets.shape) != tuple(states.shape):
        raise ShapeError(
            f"pairs must have targets of the states' shape {tuple(states.shape)}, "
            f"got {tuple(targets.shape)}",
            "pairs",
        )
    if tuple(times.shape) != (count,):
        raise ShapeError(
            f"pairs must have one time per state, shape ({count},), got {tuple(times.shape)}",
            "pairs",
        )
    return states, times, targets
