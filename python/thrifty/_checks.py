"""Checks of scalar arguments, shared by every core: each error names the argument.

``bool`` is refused where a number is asked for: ``True`` is an ``int`` to Python, but a
flag passed where a count belongs is a mistake, not a one.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from thrifty.errors import InvalidArgumentError


def check_int(value: Any, argument: str, *, minimum: int, maximum: int | None = None) -> int:
    """An integer (Python or NumPy) in ``minimum..=maximum``, as an ``int``.

    Examples
    --------
    >>> from thrifty._checks import check_int
    >>> check_int(3, "k", minimum=1)
    3
    >>> check_int(0, "k", minimum=1)
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: k must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(
            f"{argument} must be an integer, got {type(value).__name__}", argument
        )
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..={maximum}"
        raise InvalidArgumentError(f"{argument} must be an integer {bound}, got {number}", argument)
    return number


def check_length(value: Any, argument: str, *, minimum: int, itemsize: int = 8) -> int:
    """A count of items an array will hold: ``>= minimum``, and addressable at ``itemsize``.

    A count whose bytes exceed what a pointer can address is refused here, naming the
    argument, rather than by NumPy or the allocator in the middle of the work.

    Examples
    --------
    >>> from thrifty._checks import check_length
    >>> check_length(10, "n", minimum=1)
    10
    >>> check_length(2**62, "n", minimum=1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: n: needs 4611686018427387904 items of 8 bytes, ...
    """
    number = check_int(value, argument, minimum=minimum)
    if number > sys.maxsize // max(itemsize, 1):
        raise InvalidArgumentError(
            f"{argument}: needs {number} items of {itemsize} bytes, more memory than can be "
            "allocated",
            argument,
        )
    return number


def check_choice(value: Any, argument: str, choices: Sequence[str]) -> str:
    """One of the strings ``choices``; anything else (a near miss, a non-string) is refused.

    Examples
    --------
    >>> from thrifty._checks import check_choice
    >>> check_choice("heun", "solver", ("euler", "heun"))
    'heun'
    >>> check_choice(["heun"], "solver", ("euler", "heun"))
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: solver must be one of 'euler', 'heun', got ['heun']
    """
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(
            f"{argument} must be one of {', '.join(map(repr, choices))}, got {value!r}", argument
        )
    return str(value)


def check_seed(value: Any, argument: str = "seed") -> int:
    """A seed for the Rust cores' generators: an integer in ``[0, 2**64)``.

    Examples
    --------
    >>> from thrifty._checks import check_seed
    >>> check_seed(2**64 - 1)
    18446744073709551615
    """
    return check_int(value, argument, minimum=0, maximum=2**64 - 1)


def check_real(
    value: Any,
    argument: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number (Python or NumPy) between ``low`` and ``high``, as a ``float``.

    Each bound is included unless its ``*_open`` flag is set.

    Examples
    --------
    >>> from thrifty._checks import check_real
    >>> check_real(0.9, "momentum", low=0.0, high=1.0, high_open=True)
    0.9
    >>> check_real(1.0, "momentum", low=0.0, high=1.0, high_open=True)
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: momentum must be a finite number in [0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(
            f"{argument} must be a number, got {type(value).__name__}", argument
        )
    number = float(value)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (math.isfinite(number) and above and below):
        interval = _interval(low, high, low_open, high_open)
        raise InvalidArgumentError(
            f"{argument} must be a finite number{interval}, got {value!r}", argument
        )
    return number


def check_positive(value: Any, argument: str) -> float:
    """A finite real number > 0, as a ``float``.

    Examples
    --------
    >>> from thrifty._checks import check_positive
    >>> check_positive(1e-3, "lr")
    0.001
    >>> check_positive(float("inf"), "lr")
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: lr must be a finite number > 0, got inf
    """
    return check_real(value, argument, low=0.0, low_open=True)


#: The largest float32: a step size or decay beyond it cannot be applied to float32 tensors
#: (torch refuses such an ``alpha``), and would send any parameter to infinity anyway.
FLOAT32_MAX = 3.4028234663852886e38


def check_rate(value: Any, argument: str, *, positive: bool = True) -> float:
    """A learning rate or decay for torch tensors: finite, > 0 (``>= 0`` unless
    ``positive``), and at most :data:`FLOAT32_MAX`.

    Examples
    --------
    >>> from thrifty._checks import check_rate
    >>> check_rate(0.02, "lr")
    0.02
    >>> check_rate(1e300, "lr")
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: lr must be a finite number in (0, 3.40282e+38], got 1e+300
    """
    return check_real(value, argument, low=0.0, high=FLOAT32_MAX, low_open=positive)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """The bounds as the messages say them, with a leading space (nothing when unbounded)."""
    if math.isinf(high):
        return "" if math.isinf(low) else f" {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
