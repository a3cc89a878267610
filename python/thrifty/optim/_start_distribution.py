"""Drop-Muon's start-index distribution that minimises cost times the iteration bound."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from thrifty._checks import check_real
from thrifty.errors import DTypeError, InvalidArgumentError, NonFiniteError, ShapeError

Numbers = Sequence[float] | npt.NDArray[Any]


def start_distribution(
    smoothness: Numbers | None = None, cost: Numbers | None = None, *, fixed_cost: float = 0.0
) -> npt.NDArray[np.float64]:
    """The probabilities ``p_s`` of :class:`DropMuon`'s start index ``s = 0..L-1``.

    Layer ``i`` (``0`` at the input) is updated when ``s <= i``, with probability
    ``q_i = p_0 + ... + p_i``: ``q`` rises with ``i`` and ``q_{L-1} = 1``. A step
    backpropagates through the updated layers only, so its expected cost, beyond the
    forward pass that every ``s`` pays, is ``sum_i q_i c_i`` with ``c_i`` the backward
    cost of layer ``i`` (and its optimizer update, which is skipped with it). The
    iteration bound of Drop-Muon (arXiv 2510.02239) grows as ``sum_i L_i / q_i`` with
    ``L_i`` the smoothness of the loss in layer ``i``, measured in that layer's own norm: a
    layer updated rarely needs more steps. The total work to a
    given accuracy scales with the product of the two.

    The product does not change when ``q`` is multiplied by a constant, and
    ``min_a (a A + B / a) = 2 sqrt(A B)``: over the cone of rising ``q`` the product is
    therefore minimised, up to scale, by the minimiser of ``sum_i (q_i c_i + L_i / q_i)``.
    That sum is separable and convex in each ``q_i`` (best at ``sqrt(L_i / c_i)`` alone),
    so under ``q_0 <= ... <= q_{L-1}`` the pool-adjacent-violators algorithm solves it
    exactly: where neighbours would fall, they are pooled into one run ``B`` that shares
    ``q_B = sqrt(L_B / C_B)``, the sums of ``L_i`` and ``c_i`` over the run. The result is
    scaled to ``q_{L-1} = 1`` and ``p_s = q_s - q_{s-1}``; inside a pooled run ``p`` is 0.

    Full-network updates (``p = [1, 0, ..., 0]``, plain Muon) come out exactly when every
    prefix of the layers has ``L_0 + ... + L_k >= (c_0 + ... + c_k) * sum(L) / sum(c)``:
    in particular when ``L_i / c_i`` is the same for every layer, or falls towards the
    output. Dropping pays where the input-side layers are expensive to backpropagate
    through compared with how much the loss bends along them.

    What every step pays whatever ``s`` (the forward pass, the loss) does not shrink when
    layers are dropped, and so argues against dropping: ``fixed_cost`` adds it to the cost
    of the last layer, which every step updates. Without it (the default) the forward pass
    is taken as free, which favours dropping more than the wall clock will.

    Parameters
    ----------
    smoothness
        ``L_i`` per layer, finite and ``> 0``; ``None`` takes them equal (the
        distribution from the costs alone).
    cost
        ``c_i`` per layer (backward seconds, FLOPs: only ratios matter), finite and
        ``> 0``; ``None`` takes them equal (the distribution from the smoothness alone).
        At least one of the two must be given; with both, of the same length.
    fixed_cost
        The cost every step pays, in the units of ``cost``, finite and ``>= 0``.

    Returns
    -------
    numpy.ndarray
        ``L`` float64 probabilities, ``>= 0``, summing to 1; pass them as
        :class:`DropMuon`'s ``sampler``.

    Raises
    ------
    ShapeError
        A list that is not 1-D, is empty, or whose length differs from the other's.
    NonFiniteError
        NaN or infinity in either list.
    InvalidArgumentError
        A value ``<= 0``, values more than a factor ``1e300`` apart, or neither list given.
    DTypeError
        Something that is not a list of real numbers (booleans, strings and complex
        numbers included).

    The ``InvalidArgumentError`` is raised for a ``fixed_cost`` that is negative or not
    finite, too.

    Examples
    --------
    Backward costs that fall towards the output, as in a CNN whose first convs work at
    full resolution, with equal smoothness: the expensive input layers are updated less.

    >>> from thrifty.optim import start_distribution
    >>> p = start_distribution(cost=[4.0, 4.0, 2.0, 1.0, 1.0])
    >>> p.round(3).tolist()
    [0.5, 0.0, 0.207, 0.293, 0.0]
    >>> start_distribution([2.0, 1.0, 0.5], [2.0, 1.0, 0.5]).tolist()  # L / c constant
    [1.0, 0.0, 0.0]
    """
    if smoothness is None and cost is None:
        raise InvalidArgumentError(
            "give smoothness, cost or both: with neither, every distribution ties",
            "smoothness",
        )
    lipschitz = None if smoothness is None else _per_layer(smoothness, "smoothness")
    costs = None if cost is None else _per_layer(cost, "cost")
    if lipschitz is not None and costs is not None and len(lipschitz) != len(costs):
        raise ShapeError(
            f"smoothness and cost must have one value per layer each, got {len(lipschitz)} "
            f"and {len(costs)}",
            "cost",
        )
    layers = len(lipschitz) if lipschitz is not None else len(costs)  # type: ignore[arg-type]
    if lipschitz is None:
        lipschitz = [1.0] * layers
    if costs is None:
        costs = [1.0] * layers
    fixed = check_real(fixed_cost, "fixed_cost", low=0.0)
    # Only ratios matter: scaled to at most 1, sums and products below cannot overflow.
    cost_scale = max(max(costs), fixed)
    costs = [c / cost_scale for c in costs]
    costs[-1] += fixed / cost_scale
    lipschitz_scale = max(lipschitz)
    lipschitz = [lip / lipschitz_scale for lip in lipschitz]
    if min(costs) == 0.0 or min(lipschitz) == 0.0:
        raise InvalidArgumentError(
            "smoothness and cost (with fixed_cost) must each lie within a factor 1e300 of "
            "their largest value",
            "cost" if min(costs) == 0.0 else "smoothness",
        )
    levels = _isotonic_levels(lipschitz, costs)
    top = levels[-1]
    q = np.array([level / top for level in levels], dtype=np.float64)
    q[-1] = 1.0
    p = np.diff(q, prepend=0.0)
    # Rounding in the division can leave -1e-17 between equal levels of different runs.
    return np.clip(p, 0.0, None)


def expected_work(
    q: Sequence[float] | npt.NDArray[Any], smoothness: Sequence[float], cost: Sequence[float]
) -> float:
    """``(sum_i q_i c_i) * (sum_i L_i / q_i)``: what :func:`start_distribution` minimises."""
    return math.fsum(a * c for a, c in zip(q, cost, strict=True)) * math.fsum(
        lip / a for a, lip in zip(q, smoothness, strict=True)
    )


def _isotonic_levels(lipschitz: list[float], costs: list[float]) -> list[float]:
    """Pool-adjacent-violators for ``min sum_i q_i c_i + L_i / q_i`` with ``q`` rising."""
    # Each run: (sum of L, sum of c, layers in it); its level is sqrt(L / c).
    runs: list[tuple[float, float, int]] = []
    for lip, c in zip(lipschitz, costs, strict=True):
        runs.append((lip, c, 1))
        # Ratios compare the same as their square roots, without rounding ties apart.
        while len(runs) > 1 and runs[-2][0] * runs[-1][1] >= runs[-1][0] * runs[-2][1]:
            last, before = runs.pop(), runs.pop()
            runs.append((before[0] + last[0], before[1] + last[1], before[2] + last[2]))
    levels: list[float] = []
    for lip, c, size in runs:
        # L / c can overflow where both roots are finite.
        levels.extend([math.sqrt(lip) / math.sqrt(c)] * size)
    return levels


def _per_layer(values: Any, argument: str) -> list[float]:
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise DTypeError(
            f"{argument} must be a list of real numbers, one per layer, got "
            f"{type(values).__name__}",
            argument,
        ) from error
    # Booleans, strings and complex numbers would convert to float64 without complaint.
    if raw.dtype.kind not in "iuf":
        raise DTypeError(
            f"{argument} must be a list of real numbers, one per layer, got dtype {raw.dtype}",
            argument,
        )
    array = raw.astype(np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ShapeError(
            f"{argument} must be a non-empty 1-D list, one value per layer, got shape "
            f"{array.shape}",
            argument,
        )
    if not bool(np.isfinite(array).all()):
        raise NonFiniteError(f"{argument} must be finite, got {array.tolist()}", argument)
    if bool((array <= 0).any()):
        raise InvalidArgumentError(f"{argument} must be > 0, got {array.tolist()}", argument)
    return [float(x) for x in array]
