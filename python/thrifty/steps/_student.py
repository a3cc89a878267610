"""The student-propagated DP of :func:`thrifty.steps.schedule`, over batches of samples.

For every (jumps used ``m``, node ``j``) the DP keeps the best state the student's own ``m``
jumps reach at ``j``, scored against the teacher's state there. Each level's choice sums the
errors of every training sample, so memory is bounded by one batch of samples: when a batch
holds every sample the states are carried from level to level, otherwise each batch's
teacher and student states are recomputed at every level from the noise and the parent
pointers. Sums run one sample after the other, so the result is the same bits for every
batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty._arrays import is_gpu_array
from thrifty.errors import InvalidArgumentError
from thrifty.steps._cost import Metric, _teacher, jump_error_sums
from thrifty.steps._grid import Float64Array
from thrifty.steps._path import Int64Array
from thrifty.steps._sampling import sample
from thrifty.steps._velocity import Velocity, empty, evaluate, to_host


def sample_distances(prediction: Any, target: Any, metric: Metric) -> np.ndarray[Any, Any]:
    """The metric between two batches of states, one distance a sample, on the host."""
    if callable(metric):
        return to_host(metric(prediction, target))
    diff = to_host(prediction).astype(np.float64) - to_host(target).astype(np.float64)
    flat = diff.reshape(diff.shape[0], -1)
    if metric == "l1":
        return np.asarray(np.abs(flat).sum(axis=1))
    return np.asarray(np.linalg.norm(flat, axis=1))


def sample_batches(samples: int, batch: int) -> list[slice]:
    """Consecutive batches of at most ``batch`` samples, in sample order."""
    return [slice(start, start + batch) for start in range(0, samples, batch)]


def _zeros(like: Any, shape: tuple[int, ...]) -> Any:
    """Zeros, not uninitialised memory: the jump-error kernel refuses NaN in any row, even
    the rows the DP masks out afterwards."""
    out = empty(like, shape)
    out[...] = 0
    return out


def add_sample_errors(
    total: Float64Array,
    starts: Any,
    velocities: Any,
    targets: Any,
    grid: Float64Array,
    metric: Metric,
    *,
    first: bool,
) -> None:
    """Add every sample's jump errors to ``total``, one sample after the other.

    The CPU kernel sums a batch one sample after the other in sample order, from zero. So
    the first batch (``total`` still zero) takes one call, and every later sample is added
    on its own: the sums are the same bits however the samples were split into batches,
    and the same as one call over all of them. The CUDA kernel and a callable metric sum
    in another order, so they take every sample on its own.
    """
    if first and isinstance(metric, str) and not is_gpu_array(starts):
        total += jump_error_sums(starts, velocities, targets, grid, metric)
        return
    for b in range(int(starts.shape[1])):
        one = slice(b, b + 1)
        total += jump_error_sums(starts[:, one], velocities[:, one], targets[:, one], grid, metric)


@dataclass
class Problem:
    """Everything the candidates share: the velocity, the grids, the teacher's endpoints
    and cost matrix, and how many samples one batch may hold.

    The teacher's trajectory is kept (``teacher``) only when one batch holds every
    training sample; otherwise the student DP recomputes it batch by batch.
    """

    velocity: Velocity
    k: int
    grid: Float64Array
    metric: Metric
    train_noise: Any
    train_target: Any
    validation_noise: Any
    validation_target: Any
    cost: Float64Array
    batch: int
    sample_batch: int
    teacher: Any
    bar: Any

    def error(self, times: Float64Array, *, validation: bool) -> float:
        """Mean endpoint distance to the teacher, sampled ``sample_batch`` samples at a
        time; the mean is taken once over all the distances, as over one batch."""
        noise = self.validation_noise if validation else self.train_noise
        target = self.validation_target if validation else self.train_target
        distances = [
            sample_distances(sample(self.velocity, noise[part], times), target[part], self.metric)
            for part in sample_batches(int(noise.shape[0]), self.sample_batch)
        ]
        return float(np.mean(np.concatenate(distances)))

    def teacher_states(self, part: slice) -> Any:
        """The teacher's states ``(n + 1, batch, *state)`` on one batch of training noise."""
        if self.teacher is not None:
            return self.teacher
        states, velocities = _teacher(self.velocity, self.train_noise[part], self.grid, self.bar)
        del velocities
        return states


def _student_states(
    problem: Problem, x0: Any, parents: Int64Array, valid: list[Any], level: int
) -> Any:
    """The student's states at every valid node of ``level``, rebuilt from the noise ``x0``
    by replaying the jumps the parent pointers chose.

    Only the nodes some later state descends from are evaluated. Each state is the same
    expression on the same values as when the DP first reached it, so it is the same bits.
    Returns ``(n, batch, *state)``, zeros off the valid nodes.
    """
    n = problem.grid.size - 1
    needed: list[Any] = [None] * (level + 1)
    needed[level] = np.flatnonzero(valid[level])
    for m in range(level, 0, -1):
        needed[m - 1] = np.unique(parents[m, needed[m]])
    shape = (n, *x0.shape)
    reached = _zeros(x0, shape)
    reached[0] = x0
    if level == 0:
        return reached
    velocities = _zeros(x0, shape)
    following = _zeros(x0, shape)
    for m in range(1, level + 1):
        for start in needed[m - 1]:
            velocities[start] = evaluate(
                problem.velocity, reached[start], float(problem.grid[start])
            )
        for j in needed[m]:
            best = int(parents[m, j])
            dt = float(problem.grid[j] - problem.grid[best])
            following[j] = reached[best] + dt * velocities[best]
        reached, following = following, reached
    return reached


def student_path(problem: Problem) -> Int64Array:
    """The student-propagated DP: for every (jumps used m, node j) keep the best state the
    student's own m jumps reach at node j, scored against the teacher's state there.

    The choice of each level sums the errors of every sample, so the levels run one after
    the other over all batches. When one batch holds every sample, its states are carried
    from level to level; otherwise each batch's teacher and student states are recomputed
    at every level from the noise and the parent pointers, which keeps memory at one batch.
    """
    n = problem.grid.size - 1
    k = problem.k
    noise = problem.train_noise
    samples = int(noise.shape[0])
    parts = sample_batches(samples, problem.batch)
    valid: list[Any] = [np.zeros(n, dtype=bool) for _ in range(k + 1)]
    valid[0][0] = True
    parents = np.full((k + 1, n + 1), -1, dtype=np.int64)
    carried: Any = None
    for m in range(1, k + 1):
        errors = np.zeros((n + 1, n + 1), dtype=np.float64)
        for part in parts:
            teacher = problem.teacher_states(part)
            if carried is None:
                reached = _student_states(problem, noise[part], parents, valid, m - 1)
            else:
                reached = carried
            velocities = _zeros(reached, tuple(reached.shape))
            for start in np.flatnonzero(valid[m - 1]):
                velocities[start] = evaluate(
                    problem.velocity, reached[start], float(problem.grid[start])
                )
            add_sample_errors(
                errors,
                reached,
                velocities,
                teacher,
                problem.grid,
                problem.metric,
                first=part is parts[0],
            )
            del teacher
            if len(parts) > 1:
                del reached, velocities
        errors = errors / samples
        errors[:n][~valid[m - 1]] = np.inf
        errors[np.tril_indices(n + 1)] = np.inf  # a jump must move forward
        # Node j can be the m-th knot only if the k - m remaining jumps still fit after it.
        targets = [n] if m == k else range(m, n - (k - m) + 1)
        for j in targets:
            column = errors[:n, j]
            best = int(np.argmin(column))  # the first minimum: ties go to the smallest node
            if not np.isfinite(column[best]):
                continue
            parents[m, j] = best
            if j < n:
                valid[m][j] = True
        if len(parts) == 1 and m < k:
            carried = _zeros(reached, tuple(reached.shape))
            for node in np.flatnonzero(valid[m]).tolist():
                best = int(parents[m, node])
                dt = float(problem.grid[node] - problem.grid[best])
                carried[node] = reached[best] + dt * velocities[best]
            del reached, velocities
    if parents[k, n] < 0:
        raise InvalidArgumentError(f"no {k}-jump path exists on a grid of {n} steps", "k")
    nodes = [n]
    for m in range(k, 0, -1):
        nodes.append(int(parents[m, nodes[-1]]))
    return np.asarray(nodes[::-1], dtype=np.int64)
