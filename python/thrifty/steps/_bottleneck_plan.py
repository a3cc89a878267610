"""The stage plan of Bottleneck Sampling (arXiv 2503.18940): how ``k`` velocity evaluations
are laid out over high-low-high resolution stages.

:func:`bottleneck_plan` splits the steps over the stages by largest remainder, maps each
stage's clock to time with its own timestep shift, and fixes where each stage re-enters the
trajectory after a resolution change. The resulting :class:`BottleneckPlan` is plain data
(it round-trips through JSON); :func:`thrifty.steps.sample_bottleneck` runs it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty._checks import check_length, check_real
from thrifty.errors import InvalidArgumentError
from thrifty.steps._grid import Float64Array, check_times, shift_times

__all__ = ["BottleneckPlan", "BottleneckStage", "bottleneck_plan"]

DEFAULT_STAGES: tuple[tuple[float, float], ...] = ((1.0, 0.2), (0.5, 0.6), (1.0, 0.2))

# The paper's FLUX.1-dev strengths (its Table 4) are sigma = 0.8 entering the bottleneck and
# sigma = 0.6 entering the last stage. On the default stages that is no rewind on the way
# down and half of the elapsed time undone on the way up, where upsampling has lost detail.
_RENOISE_DOWN = 0.0
_RENOISE_UP = 0.5

# Two floats this close are the same scale or time (the sum-of-fractions tolerance).
_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class BottleneckStage:
    """One stage of a :class:`BottleneckPlan`: a resolution and the Euler nodes run at it.

    Attributes
    ----------
    scale : float
        Resolution relative to full, ``0 < scale <= 1``; the stage runs on
        ``(H * scale, W * scale)`` images.
    times : numpy.ndarray of float64, shape (steps + 1,)
        The stage's own strictly increasing time nodes in ``[0, 1]``. ``times[0]`` is the
        time the stage is entered at (the re-noise time), ``times[-1]`` the time it ends at.
    shift : float
        The SD3 timestep shift (arXiv 2403.03206) this stage's nodes were placed with;
        informational, since ``times`` already include it.

    Examples
    --------
    >>> from thrifty import steps
    >>> stage = steps.BottleneckStage(0.5, [0.2, 0.5, 0.8])
    >>> stage.steps, stage.renoise_time
    (2, 0.2)
    """

    scale: float
    times: Float64Array
    shift: float = 1.0

    def __post_init__(self) -> None:
        scale = _finite_float(self.scale, "scale")
        if not 0.0 < scale <= 1.0:
            raise InvalidArgumentError(f"scale must be in (0, 1], got {self.scale!r}", "scale")
        times = check_times(self.times, "times").copy()
        if times[0] < 0.0 or times[-1] > 1.0:
            raise InvalidArgumentError(
                f"times must lie in [0, 1], got {times[0]!r} to {times[-1]!r}", "times"
            )
        times.setflags(write=False)
        shift = _finite_float(self.shift, "shift")
        if shift <= 0.0:
            raise InvalidArgumentError(f"shift must be > 0, got {self.shift!r}", "shift")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "shift", shift)

    @property
    def steps(self) -> int:
        """Velocity evaluations of the stage with Euler: ``len(times) - 1``."""
        return int(self.times.size - 1)

    @property
    def renoise_time(self) -> float:
        """The time the state is re-noised to on entering the stage (0 for the first)."""
        return float(self.times[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: ``scale``, ``shift``, ``steps``, ``renoise_time``, ``times``."""
        return {
            "scale": self.scale,
            "shift": self.shift,
            "steps": self.steps,
            "renoise_time": self.renoise_time,
            "times": self.times.tolist(),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BottleneckStage):
            return NotImplemented
        return (
            self.scale == other.scale
            and self.shift == other.shift
            and np.array_equal(self.times, other.times)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class BottleneckPlan:
    """The stages of a Bottleneck Sampling run, from :func:`bottleneck_plan`.

    The first stage starts at ``t = 0`` from the given noise, the last one ends at
    ``t = 1`` at full resolution (``scale == 1``).

    Attributes
    ----------
    stages : tuple of BottleneckStage

    Examples
    --------
    >>> import json
    >>> from thrifty import steps
    >>> plan = steps.bottleneck_plan(10)
    >>> plan.k, [s.steps for s in plan.stages], plan.pixel_fraction
    (10, [2, 6, 2], 0.55)
    >>> steps.BottleneckPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    True
    """

    stages: tuple[BottleneckStage, ...]

    def __post_init__(self) -> None:
        stages = tuple(self.stages) if isinstance(self.stages, (list, tuple)) else None
        if not stages or not all(isinstance(s, BottleneckStage) for s in stages):
            raise InvalidArgumentError(
                f"stages must be a non-empty sequence of BottleneckStage, got {self.stages!r}",
                "stages",
            )
        if stages[0].times[0] != 0.0:
            raise InvalidArgumentError(
                f"stages must start at t = 0 (the noise), got {stages[0].times[0]!r}", "stages"
            )
        if stages[-1].times[-1] != 1.0 or stages[-1].scale != 1.0:
            raise InvalidArgumentError(
                "stages must end at t = 1 at full resolution (scale 1.0), got "
                f"t = {stages[-1].times[-1]!r} at scale {stages[-1].scale!r}",
                "stages",
            )
        object.__setattr__(self, "stages", stages)

    @property
    def k(self) -> int:
        """Velocity evaluations of the whole run with Euler (twice that with Heun)."""
        return sum(stage.steps for stage in self.stages)

    @property
    def pixel_fraction(self) -> float:
        """Pixels the velocity sees over the run, as a fraction of ``k`` full-resolution
        evaluations (attention costs fall faster still, with the square of the tokens)."""
        seen = sum(stage.steps * stage.scale**2 for stage in self.stages)
        return round(seen / self.k, 12)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict ``{"k": ..., "stages": [...]}``; see :meth:`from_dict`."""
        return {"k": self.k, "stages": [stage.to_dict() for stage in self.stages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BottleneckPlan:
        """Rebuild a plan from :meth:`to_dict`'s output (``steps`` and ``k`` are checked)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("stages"), list):
            raise InvalidArgumentError(
                f"data must be a dict with a 'stages' list, got {data!r}", "data"
            )
        stages = []
        for entry in data["stages"]:
            if not isinstance(entry, Mapping) or "scale" not in entry or "times" not in entry:
                raise InvalidArgumentError(
                    f"each stage must be a dict with 'scale' and 'times', got {entry!r}", "data"
                )
            stage = BottleneckStage(entry["scale"], entry["times"], entry.get("shift", 1.0))
            if "steps" in entry and entry["steps"] != stage.steps:
                raise InvalidArgumentError(
                    f"stage steps {entry['steps']!r} disagree with its {stage.steps + 1} times",
                    "data",
                )
            stages.append(stage)
        plan = cls(tuple(stages))
        if "k" in data and data["k"] != plan.k:
            raise InvalidArgumentError(
                f"k = {data['k']!r} disagrees with the stages' {plan.k} steps", "data"
            )
        return plan

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BottleneckPlan):
            return NotImplemented
        return self.stages == other.stages

    __hash__ = None  # type: ignore[assignment]


def bottleneck_plan(
    k: int,
    stages: Sequence[tuple[float, float]] = DEFAULT_STAGES,
    *,
    shift: float | Sequence[float] = 1.0,
    renoise: float | Sequence[float] | None = None,
) -> BottleneckPlan:
    """Lay ``k`` velocity evaluations out over high-low-high resolution stages.

    Bottleneck Sampling (Tian et al., arXiv 2503.18940) denoises at full resolution first
    and last and at a lower resolution in between. The plan fixes every stage's Euler nodes:

    1. **Steps.** Stage ``i`` gets ``n_i`` of the ``k`` steps, ``fraction_i * k`` rounded by
       largest remainder with at least one step per stage, so that ``sum(n_i) == k``.
    2. **Time.** A base clock ``u`` runs from 0 to 1 in ``k`` equal steps and stage ``i``
       owns the stretch of ``n_i`` of them, so ``fraction`` is the stage's share of the
       steps *and* of the unshifted time, as the paper's step counts per stage are.
    3. **Shift.** Stage ``i`` maps its clock to time with the SD3 shift (arXiv 2403.03206)
       on ``sigma = 1 - t``: ``sigma' = s_i sigma / (1 + (s_i - 1) sigma)``. A single
       ``shift`` ``s`` gives ``s_i = s * scale_i``, SD3's resolution rule ``sqrt(m / n)``
       for ``scale**2`` as many pixels. It is exact bookkeeping: averaging ``f x f`` pixels
       divides the noise's standard deviation by ``f``, and the shift by ``1 / f`` maps a
       full-resolution time to the low-resolution time with the same signal-to-noise ratio.
       So on the way down the time jumps forward, with no loss.
    4. **Re-noise.** Entering stage ``i > 0``, the state is re-noised to
       ``t' = (1 - r) * b_i``, where ``b_i`` is where the stage nominally starts and
       ``r`` the renoise strength of that transition: 0 continues at ``b_i``, 1 restarts
       from pure noise. The stage's nodes then run from ``t'`` to its end.

    Parameters
    ----------
    k : int
        Total velocity evaluations with Euler, at least one per stage.
    stages : sequence of (scale, fraction)
        ``scale`` is the resolution relative to full (``0 < scale <= 1``; the last stage
        must be at 1), ``fraction`` the share of the steps (positive, summing to 1 within
        1e-9). The default ``((1.0, 0.2), (0.5, 0.6), (1.0, 0.2))`` is roughly the paper's
        FLUX.1-dev setting: 1024-512-1024 pixels with 6, 20 and 8 steps (its Table 4).
    shift : float or sequence of float
        The full-resolution shift ``s`` (1 means none; apply a shift here *or* in your
        scheduler, never in both), or one shift per stage to set them directly (the
        paper's FLUX.1-dev list is ``(9, 6, 9)`` on top of the model's own schedule).
    renoise : float or sequence of float, optional
        The strength ``r`` in ``[0, 1]`` of each transition: one value for all, or one per
        transition (``len(stages) - 1``). The default is 0 where the resolution does not
        grow and 0.5 where it does, which on the default stages reproduces the paper's
        FLUX.1-dev re-noise strengths (1, 0.8, 0.6): ``sigma = 0.8`` into the bottleneck
        (as a full-resolution signal-to-noise ratio) and ``sigma = 0.6`` out of it.

    Returns
    -------
    BottleneckPlan

    Examples
    --------
    >>> from thrifty import steps
    >>> plan = steps.bottleneck_plan(10)
    >>> [(s.scale, s.steps) for s in plan.stages]
    [(1.0, 2), (0.5, 6), (1.0, 2)]
    >>> [round(s.renoise_time, 3) for s in plan.stages]
    [0.0, 0.333, 0.4]
    >>> steps.bottleneck_plan(4, ((1.0, 1.0),)).stages[0].times.tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    scales, fractions = _check_stages(stages)
    count = len(scales)
    k = check_length(k, "k", minimum=1)
    if k < count:
        raise InvalidArgumentError(
            f"k must be at least the number of stages ({count}), got {k}", "k"
        )
    shifts = _check_shift(shift, scales)
    strengths = _check_renoise(renoise, scales)
    counts = _largest_remainder(fractions, k)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.float64) / k
    planned = []
    for i, (scale, s, n) in enumerate(zip(scales, shifts, counts, strict=True)):
        if i == 0:
            entry = 0.0
        else:
            nominal = _shifted(bounds[i], s)
            entry = (1.0 - strengths[i - 1]) * nominal
        # The clock of the entry time; at 0 exactly, so that no rounding moves the noise end.
        start = _shifted(entry, 1.0 / s) if entry > 0.0 else 0.0
        clock = start + (bounds[i + 1] - start) * (np.arange(n + 1, dtype=np.float64) / n)
        times = shift_times(clock, s) if s != 1.0 else clock
        times[0] = entry
        if i == count - 1:
            times[-1] = 1.0
        if not (np.diff(times) > 0).all():
            raise InvalidArgumentError(
                f"shift {s!r} of stage {i} squeezes its {n} steps below float resolution",
                "shift",
            )
        planned.append(BottleneckStage(scale, times, s))
    return BottleneckPlan(tuple(planned))


def _is_number(value: Any) -> bool:
    """A real number; a bool is a flag, not a number."""
    real = isinstance(value, (int, float, np.integer, np.floating))
    return real and not isinstance(value, (bool, np.bool_))


def _finite_float(value: Any, argument: str) -> float:
    return check_real(value, argument)


def _check_stages(stages: Any) -> tuple[list[float], list[float]]:
    try:
        pairs = [tuple(pair) for pair in stages]
    except TypeError:
        pairs = []
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise InvalidArgumentError(
            f"stages must be a non-empty sequence of (scale, fraction) pairs, got {stages!r}",
            "stages",
        )
    scales, fractions = [], []
    for scale, fraction in pairs:
        if _is_number(scale) and _is_number(fraction):
            scales.append(float(scale))
            fractions.append(float(fraction))
        else:
            raise InvalidArgumentError(
                f"stages must hold numbers (scale, fraction), got {stages!r}", "stages"
            )
    if not all(math.isfinite(s) and 0.0 < s <= 1.0 for s in scales):
        raise InvalidArgumentError(f"stages must have scales in (0, 1], got {scales}", "stages")
    if scales[-1] != 1.0:
        raise InvalidArgumentError(
            f"stages must end at full resolution (scale 1.0), got {scales[-1]}", "stages"
        )
    if not all(math.isfinite(f) and f > 0.0 for f in fractions):
        raise InvalidArgumentError(
            f"stages must have positive fractions, got {fractions}", "stages"
        )
    total = math.fsum(fractions)
    if abs(total - 1.0) > _TOLERANCE:
        raise InvalidArgumentError(
            f"stages must have fractions summing to 1, got {fractions} (sum {total!r})",
            "stages",
        )
    return scales, fractions


def _per_stage(value: Any, count: int, argument: str) -> list[float] | None:
    """``value`` as a list of ``count`` floats if it is a sequence, None if a scalar."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return None
    if isinstance(value, (str, bytes, bytearray)):
        # Iterable, but a sequence of characters or byte values, not of numbers.
        raise InvalidArgumentError(
            f"{argument} must be a number or a sequence of numbers, got {value!r}", argument
        )
    try:
        values = [_finite_float(v, argument) for v in value]
    except TypeError:
        raise InvalidArgumentError(
            f"{argument} must be a number or a sequence of numbers, got {value!r}", argument
        ) from None
    if len(values) != count:
        raise InvalidArgumentError(
            f"{argument} must have {count} values, got {len(values)}: {value!r}", argument
        )
    return values


def _check_shift(shift: Any, scales: list[float]) -> list[float]:
    given = _per_stage(shift, len(scales), "shift")
    shifts = given if given is not None else [_finite_float(shift, "shift") * s for s in scales]
    if not all(s > 0.0 for s in shifts):
        raise InvalidArgumentError(f"shift must be > 0, got {shift!r}", "shift")
    return shifts


def _check_renoise(renoise: Any, scales: list[float]) -> list[float]:
    transitions = len(scales) - 1
    if renoise is None:
        return [
            _RENOISE_UP if after > before + _TOLERANCE else _RENOISE_DOWN
            for before, after in itertools.pairwise(scales)
        ]
    given = _per_stage(renoise, transitions, "renoise")
    # A single strength is checked even when there is no transition to apply it to.
    strengths = given if given is not None else [_finite_float(renoise, "renoise")]
    if not all(0.0 <= r <= 1.0 for r in strengths):
        raise InvalidArgumentError(f"renoise must be in [0, 1], got {renoise!r}", "renoise")
    return strengths if given is not None else strengths * transitions


def _largest_remainder(fractions: list[float], k: int) -> list[int]:
    """Hamilton's apportionment of ``k`` steps, then one step for any stage left without."""
    total = math.fsum(fractions)
    # Rounded so that quotas such as 0.6 * 3 = 1.7999999999999998 tie as they should.
    quotas = [round(f / total * k, 9) for f in fractions]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: k - sum(counts)]:
        counts[i] += 1
    for i in range(len(counts)):
        if counts[i] == 0:
            donor = max(
                (j for j in range(len(counts)) if counts[j] >= 2),
                key=lambda j: (counts[j] - quotas[j], counts[j], -j),
            )
            counts[donor] -= 1
            counts[i] = 1
    return counts


def _shifted(t: float, shift: float) -> float:
    if shift == 1.0:
        return float(t)
    return float(shift_times(np.array([t], dtype=np.float64), shift)[0])
