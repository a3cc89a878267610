"""Choosing a K-step schedule: BOSS's Bellman DP, a student-propagated DP, uniform and EDM
steps, each optionally refined, all validated on held-out noise against the teacher.

BOSS's teacher cost is local: it scores each jump from the teacher's own state and does not
model how a student's errors compound, so on its own it can lose to uniform steps (on a sharp
ring of 8 Gaussians it did, 0.40 against 0.21 at K = 4). The student-propagated DP, in the
style of OSS (arXiv 2503.21774), keeps for every (jumps used, node) the best state the
student's own jumps reach and scores it against the teacher at that node. ``method="auto"``
builds every candidate and keeps the one with the least endpoint distance to the teacher on
validation noise the search never saw, so it is never worse there than uniform steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from thrifty._arrays import is_torch_tensor
from thrifty._checks import (
    check_choice,
    check_int,
    check_length,
    check_positive,
    check_seed,
)
from thrifty._extras import require
from thrifty._plot import figure
from thrifty._progress import progress_bar
from thrifty.errors import InvalidArgumentError, ShapeError, ThriftyError
from thrifty.steps._cost import (
    DEFAULT_MAX_MEMORY,
    Metric,
    _teacher,
    check_metric,
)
from thrifty.steps._diffusers import set_scheduler_times
from thrifty.steps._grid import Float64Array, GridKind, check_times, time_grid
from thrifty.steps._path import Int64Array, optimal_path
from thrifty.steps._sampling import sample
from thrifty.steps._student import Problem, add_sample_errors, sample_batches, student_path
from thrifty.steps._velocity import (
    Velocity,
    batch_size_or,
    check_state,
    check_velocity,
    empty,
    inference,
)

Method = Literal["auto", "bellman", "student", "uniform", "edm"]
CANDIDATES: tuple[str, ...] = ("uniform", "edm", "bellman", "student")


@dataclass
class Schedule:
    """A K-step sampling schedule and how it was chosen.

    Attributes
    ----------
    times : numpy.ndarray, shape (K + 1,)
        Strictly increasing times from 0 (noise) to 1 (data).
    indices : numpy.ndarray of int64, shape (K + 1,)
        The fine-grid node of each knot (the nearest one for schedules built off the grid).
    cost : float
        The summed BOSS teacher cost of the schedule's jumps on the fine grid.
    step_errors : numpy.ndarray, shape (K,)
        The teacher cost of each jump.
    method : str
        The candidate that won, for example ``"student+refine"``.
    validation_error : float
        Mean endpoint distance to the teacher on the validation noise.
    report : dict
        Every candidate: its times, training and validation errors.
    grid : numpy.ndarray
        The fine grid the teacher ran on.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> s = steps.Schedule(times=np.array([0.0, 0.4, 1.0]))
    >>> s.k, s.sigmas().tolist()
    (2, [1.0, 0.6, 0.0])
    """

    times: Float64Array
    indices: Int64Array = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cost: float = math.nan
    step_errors: Float64Array = field(default_factory=lambda: np.zeros(0))
    method: str = "custom"
    validation_error: float = math.nan
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    grid: Float64Array = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.times = check_times(self.times)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.step_errors = np.asarray(self.step_errors, dtype=np.float64)
        self.grid = np.asarray(self.grid, dtype=np.float64)

    @property
    def k(self) -> int:
        """The number of steps (velocity evaluations with Euler)."""
        return int(self.times.size - 1)

    def sigmas(self) -> Float64Array:
        """diffusers flow-matching sigmas ``1 - t``: K + 1 values ending at the terminal 0."""
        return 1.0 - self.times

    def to_diffusers(self, scheduler: Any, *, mu: float | None = None, device: Any = None) -> Any:
        """Set this schedule on a diffusers scheduler, exactly; see
        :func:`thrifty.steps._diffusers.set_scheduler_times`."""
        return set_scheduler_times(scheduler, self.times, mu=mu, device=device)

    def sample(self, velocity: Velocity, noise: Any, *, solver: str = "euler") -> Any:
        """Run :func:`thrifty.steps.sample` on this schedule."""
        return sample(velocity, noise, self.times, solver=solver)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "times": self.times.tolist(),
            "indices": self.indices.tolist(),
            "cost": self.cost,
            "step_errors": self.step_errors.tolist(),
            "method": self.method,
            "validation_error": self.validation_error,
            "report": self.report,
            "grid": self.grid.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Rebuild a schedule from :meth:`to_dict`'s output (``times`` is required)."""
        if not isinstance(data, Mapping) or "times" not in data:
            raise InvalidArgumentError(
                f"a saved schedule must be a dict with 'times', got {type(data).__name__}", "data"
            )
        report = data.get("report", {})
        if not isinstance(report, Mapping):
            raise InvalidArgumentError(
                f"a saved schedule's 'report' must be a dict, got {type(report).__name__}", "data"
            )
        try:
            return cls(
                times=np.asarray(data["times"], dtype=np.float64),
                indices=np.asarray(data.get("indices", []), dtype=np.int64),
                cost=float(data.get("cost", math.nan)),
                step_errors=np.asarray(data.get("step_errors", []), dtype=np.float64),
                method=str(data.get("method", "custom")),
                validation_error=float(data.get("validation_error", math.nan)),
                report=dict(report),
                grid=np.asarray(data.get("grid", []), dtype=np.float64),
            )
        except (TypeError, ValueError, OverflowError) as error:
            # Not a ThriftyError: a field NumPy or float() could not convert.
            if isinstance(error, ThriftyError):
                raise
            raise InvalidArgumentError(f"data is not a saved schedule: {error}", "data") from None

    def save(self, path: str | Path) -> None:
        """Write the schedule, and its report, as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=True))

    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        """Read a schedule written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Save a figure of this schedule's knots beside every candidate in its report."""
        rows = {name: np.asarray(r["times"]) for name, r in self.report.items()}
        rows.setdefault(self.method, self.times)
        out = Path(path)
        with figure(out, size=(7, 0.5 * len(rows) + 1.2)) as ax:
            for row, (name, times) in enumerate(rows.items()):
                error = self.report.get(name, {}).get("validation_error", math.nan)
                marker = "o" if name == self.method else "|"
                ax.plot(times, np.full(times.size, row), marker=marker, linestyle="-", lw=0.8)
                ax.annotate(f"{error:.4g}", (1.02, row), va="center", fontsize=8)
            ax.set_yticks(range(len(rows)), list(rows))
            ax.set_xlim(-0.02, 1.12)
            ax.set_xlabel("t (0 = noise, 1 = data); right: validation error")
            ax.set_title(title or f"K = {self.k} schedules (chosen: {self.method})")
        return out


def _noise(
    samples: Any,
    argument: str,
    seed: int,
    shape: tuple[int, ...] | None,
    device: str | None,
) -> Any:
    """``samples`` itself when it is an array, else that many standard normals."""
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool):
        return check_state(samples, argument)
    count = check_int(samples, argument, minimum=1)
    if shape is None:
        raise InvalidArgumentError(
            f"shape (the state shape, e.g. (2,) or (3, 64, 64)) is needed when {argument} "
            "is a count rather than a noise array",
            "shape",
        )
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise InvalidArgumentError(
            f"shape must be a tuple of dimensions, got {type(shape).__name__}", "shape"
        )
    full = (count, *(check_int(s, "shape", minimum=1) for s in shape))
    check_length(math.prod(full), argument, minimum=1, itemsize=4)
    if device is not None:
        torch = require("torch")
        try:
            target = torch.device(device)
        except (TypeError, RuntimeError) as error:
            raise InvalidArgumentError(f"device is not a torch device: {error}", "device") from None
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(full, generator=generator, dtype=torch.float32).to(target)
    return np.random.default_rng(seed).standard_normal(full).astype(np.float32)


def _device_of(x: Any) -> str | None:
    """Where count-drawn validation noise must live to match the training noise."""
    return str(x.device) if is_torch_tensor(x) else None


def _bellman(problem: Problem, future_weight: float) -> Int64Array:
    return optimal_path(problem.cost, problem.k, future_weight=future_weight)


def _nearest_indices(times: Float64Array, grid: Float64Array) -> Int64Array | None:
    """Each time's nearest grid node, or None when two knots would share a node."""
    idx = np.abs(grid[None, :] - times[:, None]).argmin(axis=1).astype(np.int64)
    return idx if (np.diff(idx) > 0).all() else None


def _refine(
    problem: Problem, indices: Int64Array, budget: int, bar: Any
) -> tuple[Int64Array, float]:
    """Pattern search over the interior knots on the fine grid, lowering the measured
    endpoint distance to the teacher on the training noise. Derivative-free: the error of a
    few-step solver is piecewise smooth in the knots and has no useful gradient at hand."""
    n = problem.grid.size - 1
    best = indices.copy()
    best_error = problem.error(problem.grid[best], validation=False)
    step = max(1, n // (4 * problem.k))
    evaluations = 0
    while step >= 1 and evaluations < budget:
        improved = False
        moves = ((m, move) for m in range(1, problem.k) for move in (-step, step))
        for m, move in moves:
            if evaluations >= budget:
                break
            trial = best.copy()
            trial[m] += move
            if not (trial[m - 1] < trial[m] < trial[m + 1]):
                continue
            error = problem.error(problem.grid[trial], validation=False)
            evaluations += 1
            bar.update(1)
            if error < best_error:
                best, best_error, improved = trial, error, True
        if not improved:
            step //= 2
    return best, best_error


def schedule(
    velocity: Velocity,
    k: int,
    *,
    n: int = 100,
    samples: Any = 256,
    seed: int = 0,
    method: Method = "auto",
    refine: bool = True,
    shape: tuple[int, ...] | None = None,
    device: str | None = None,
    validation: Any = None,
    grid: GridKind = "uniform",
    metric: Metric = "l2",
    future_weight: float = 1.0,
    refine_budget: int = 60,
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: bool = True,
) -> Schedule:
    """Choose the best ``k``-step schedule for ``velocity`` on an ``n``-step teacher grid.

    Parameters
    ----------
    velocity : callable
        ``(x, t) -> v`` on NumPy arrays or torch tensors, ``t`` of shape ``(batch,)``.
    k : int
        Steps of the schedule (Euler NFE), ``1 <= k <= n``.
    n : int
        Steps of the fine Euler teacher (BOSS uses 100 to 200).
    samples : int or array
        A count of standard-normal noises drawn with ``seed`` (give ``shape``, and
        ``device`` for torch models), or the training noise itself, ``(batch, *state)``.
    method : {"auto", "bellman", "student", "uniform", "edm"}
        ``"bellman"``: BOSS's teacher-cost DP (with ``future_weight``); ``"student"``: the
        student-propagated DP; ``"uniform"``/``"edm"``: fixed spacings; ``"auto"``: all of
        them, the best on validation noise wins.
    refine : bool
        Also try each candidate after a pattern search of its knots on the fine grid.
    validation : int or array, optional
        Held-out noise (or a count of it, drawn with ``seed + 1``); default as many as the
        training samples.
    grid : {"uniform", "edm"}
        Spacing of the fine teacher grid.
    metric : {"l2", "l1"} or callable
        Per-sample distance, see :func:`cost_matrix`.
    future_weight : float
        GITS' coefficient for the Bellman DP, see :func:`optimal_path`.
    refine_budget : int
        Endpoint evaluations (each ``k`` NFE per training sample) per refined candidate.
    max_memory : int
        Bytes the samples of one batch may take: their trajectories in the DPs, about ten
        states a sample when sampling; as in :func:`cost_matrix`.
    progress : bool
        Show progress bars.

    Returns
    -------
    Schedule
        The winner; ``report`` holds every candidate's times and errors.

    Notes
    -----
    Memory is flat in ``n * samples``: one batch of samples is held at a time, sized so
    that its trajectories fit ``max_memory`` (``(4n + 1) * state`` values a sample with the
    student DP, ``(2n + 1) * state`` without), besides the noise and the teacher's
    endpoints (``samples * state`` each, for training and validation) and the velocity's
    own activations. When one batch holds every sample, the teacher trajectory and the
    student's states are kept from one DP level to the next; otherwise every level of the
    student DP recomputes each batch's teacher (``n`` velocity evaluations) and replays its
    student states from the parent pointers.

    The per-sample jump errors are summed one sample after the other in sample order, so
    the schedule does not depend on the batch size, provided the velocity gives each
    sample the same value whatever batch it comes in.

    Examples
    --------
    >>> from thrifty import steps
    >>> flow = steps.GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.15)
    >>> best = steps.schedule(flow.velocity, 4, n=40, samples=64, shape=(2,), progress=False)
    >>> uniform = best.report["uniform"]["validation_error"]
    >>> bool(best.validation_error <= uniform)
    True
    """
    check_velocity(velocity)
    n = check_length(n, "n", minimum=1)
    k = check_int(k, "k", minimum=1, maximum=n)
    chosen_method = check_choice(method, "method", ("auto", *CANDIDATES))
    seed = check_seed(seed)
    refine_budget = check_int(refine_budget, "refine_budget", minimum=0)
    max_memory = check_int(max_memory, "max_memory", minimum=1)
    future_weight = check_positive(future_weight, "future_weight")
    check_metric(metric)
    fine = time_grid(n, grid)
    train = _noise(samples, "samples", seed, shape, device)
    state_shape = tuple(int(s) for s in train.shape[1:])
    held_out = train.shape[0] if validation is None else validation
    # The validation draw's own seed, wrapped to stay a valid seed at the top of the range.
    validation_seed = (seed + 1) % 2**64
    validation_noise = _noise(
        held_out, "validation", validation_seed, state_shape, _device_of(train)
    )
    if tuple(validation_noise.shape[1:]) != state_shape:
        raise ShapeError(
            f"validation noise must have state shape {state_shape}, "
            f"got {tuple(validation_noise.shape[1:])}",
            "validation",
        )
    names = CANDIDATES if chosen_method == "auto" else (chosen_method,)
    samples_count = int(train.shape[0])
    state_size = math.prod(state_shape)
    itemsize = int(train.dtype.itemsize)
    # One batch holds the teacher's states and velocities for the cost, and the teacher's
    # states with the student's states, velocities and next states for the student DP.
    trajectories = 4 * n + 1 if "student" in names else 2 * n + 1
    batch = batch_size_or(None, samples_count, max_memory // (trajectories * state_size * itemsize))
    # Sampling holds about ten states a sample, never a trajectory: the state, its velocity
    # and the next state, then the endpoint's residual (three float64 arrays).
    sample_batch = batch_size_or(
        None,
        max(samples_count, int(validation_noise.shape[0])),
        max_memory // (10 * state_size * itemsize),
    )
    parts = sample_batches(samples_count, batch)
    recomputed = len(parts) * k * n if "student" in names and len(parts) > 1 else 0
    total = (len(parts) + 1) * n + recomputed + (len(names) * refine_budget if refine else 0)
    with progress_bar(total, f"schedule k={k}", progress) as bar, inference(train):
        sums = np.zeros((n + 1, n + 1), dtype=np.float64)
        train_target = empty(train, tuple(train.shape))
        teacher = None
        for part in parts:
            states, velocities = _teacher(velocity, train[part], fine, bar)
            add_sample_errors(
                sums, states[:-1], velocities, states, fine, metric, first=part is parts[0]
            )
            train_target[part] = states[-1]
            del velocities
            if len(parts) == 1 and "student" in names:
                teacher = states
            del states
        cost = np.triu(sums / samples_count, 1)
        problem = Problem(
            velocity, int(k), fine, metric, train, train_target, validation_noise, None,
            cost, batch, sample_batch, teacher, bar,
        )  # fmt: skip
        # The student DP runs first, so that a kept teacher trajectory is let go before
        # any sampling: the peak is then one batch, not a batch and a trajectory.
        student = student_path(problem) if "student" in names else np.zeros(0, dtype=np.int64)
        problem.teacher = teacher = None
        target = empty(validation_noise, tuple(validation_noise.shape))
        for part in sample_batches(int(validation_noise.shape[0]), sample_batch):
            target[part] = sample(velocity, validation_noise[part], fine)
        problem.validation_target = target
        bar.update(n)
        builders: dict[str, Callable[[], tuple[Float64Array, Int64Array | None]]] = {
            "uniform": lambda: (time_grid(int(k)), None),
            "edm": lambda: (time_grid(int(k), "edm"), None),
            "bellman": lambda: _on_grid(problem, _bellman(problem, future_weight)),
            "student": lambda: _on_grid(problem, student),
        }
        report: dict[str, dict[str, Any]] = {}
        chosen: dict[str, tuple[Float64Array, Int64Array | None]] = {}
        for name in names:
            times, indices = builders[name]()
            chosen[name] = (times, indices)
            if refine and k > 1:
                start = indices if indices is not None else _nearest_indices(times, fine)
                if start is not None:
                    better, _ = _refine(problem, start, refine_budget, bar)
                    chosen[f"{name}+refine"] = (fine[better], better)
        for name, (times, _) in chosen.items():
            report[name] = {
                "times": times.tolist(),
                "train_error": problem.error(times, validation=False),
                "validation_error": problem.error(times, validation=True),
            }
    # Ties keep the earlier candidate, so plain uniform steps win any exact tie.
    winner = min(report, key=lambda name: report[name]["validation_error"])
    times, indices = chosen[winner]
    if indices is None:
        indices = np.abs(fine[None, :] - times[:, None]).argmin(axis=1).astype(np.int64)
    step_errors = cost[indices[:-1], indices[1:]]
    return Schedule(
        times=times,
        indices=indices,
        cost=float(step_errors.sum()),
        step_errors=step_errors,
        method=winner,
        validation_error=report[winner]["validation_error"],
        report=report,
        grid=fine,
    )


def _on_grid(problem: Problem, indices: Int64Array) -> tuple[Float64Array, Int64Array]:
    return problem.grid[indices], indices
