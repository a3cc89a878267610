"""Seeded generators of valid and hostile arguments: scalars, options, arrays and layouts.

Every generator takes the case's ``numpy.random.Generator`` and returns the value together
with whether it is valid for the argument and a label naming what was chosen, so a failing
case says which hostile element it held.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Integers beyond every index type, and the edges of the common ones.
HUGE_INTS: tuple[int, ...] = (2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**70)
#: Integers too large to be a count of anything this machine can hold: a size-like argument
#: gets only these as its huge values, so that no case ever asks for a real giant allocation.
BEYOND_MEMORY: tuple[int, ...] = (2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70)
NEGATIVE_INTS: tuple[int, ...] = (-1, -2, -(2**31), -(2**63), -(2**70))
SPECIAL_FLOATS: tuple[float, ...] = (
    math.nan,
    math.inf,
    -math.inf,
    1e300,
    -1e300,
    1e-300,
    5e-324,
    -0.0,
    0.0,
)


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque object>"


#: Things that are not numbers, strings or arrays of the right kind.
NOT_NUMBERS: tuple[Any, ...] = (
    None,
    "1",
    "",
    b"1",
    [1],
    (1, 2),
    {},
    1 + 2j,
    np.complex128(1 + 1j),
    np.array([1.0, 2.0]),
    np.array(["a"]),
    _Opaque(),
    slice(1),
)


#: The chance that an argument generator returns a hostile value rather than a valid one.
HOSTILE = 0.15


def pick(rng: np.random.Generator, values: Sequence[Any]) -> Any:
    return values[int(rng.integers(len(values)))]


def chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def near(rng: np.random.Generator, boundaries: Sequence[int], low: int, high: int) -> int:
    """A size at, just below or just above one of ``boundaries``, clipped to ``[low, high]``."""
    b = int(pick(rng, boundaries)) + int(rng.integers(-1, 2))
    return min(max(b, low), high)


def size(rng: np.random.Generator, low: int, high: int, boundaries: Sequence[int] = ()) -> int:
    """Mostly small sizes, sometimes at a boundary of the code's blocking."""
    if boundaries and chance(rng, 0.3):
        return near(rng, boundaries, low, high)
    if chance(rng, 0.2):
        return low
    small = min(high, low + 8)
    if chance(rng, 0.7):
        return int(rng.integers(low, small + 1))
    return int(rng.integers(low, high + 1))


POWERS_OF_TWO: tuple[int, ...] = tuple(2**i for i in range(1, 13))


# --- scalars -----------------------------------------------------------------------------


def as_integer_type(rng: np.random.Generator, value: int) -> Any:
    """``value`` as a Python int or a NumPy integer scalar that holds it."""
    kinds: list[Callable[[int], Any]] = [int, np.int64]
    if 0 <= value < 2**64:
        kinds.append(np.uint64)
    if -128 <= value < 128:
        kinds.append(np.int8)
    if 0 <= value < 2**32:
        kinds.append(np.uint32)
    if -(2**63) <= value < 2**63 or kinds[-1] is not np.int64:
        pass
    convert = pick(rng, kinds)
    try:
        return convert(value)
    except OverflowError:
        return int(value)


def integer(
    rng: np.random.Generator,
    low: int,
    high: int | None,
    *,
    typical: int | None = None,
    size_like: bool = False,
    optional: bool = False,
) -> tuple[Any, bool | None, str]:
    """An integer argument valid in ``[low, high]`` (``high`` None: unbounded), or a hostile one.

    Floats, bools, strings and None are refused by thrifty's checks wherever an integer is
    asked for. ``size_like`` arguments (counts that size allocations) get only huge values
    beyond any memory, never merely large ones.
    """
    top = high if high is not None else max(low, 0, typical or 0) + 64
    if not chance(rng, HOSTILE):
        center = typical if typical is not None else low
        if chance(rng, 0.15):
            value = low if chance(rng, 0.5) or high is None or size_like else high
            return as_integer_type(rng, value), True, f"edge int {value}"
        value = int(rng.integers(max(low, center - 3), min(top, max(center, low) + 8) + 1))
        return as_integer_type(rng, value), True, f"int {value}"
    roll = rng.random()
    if roll < 0.2:
        value = low - int(pick(rng, (1, 2, 2**31, 2**63, 2**70)))
        return as_integer_type(rng, value), False, f"int {value} below {low}"
    if roll < 0.4:
        value = int(pick(rng, BEYOND_MEMORY if size_like or high is None else HUGE_INTS))
        valid = None if high is None else (not value > high)
        if size_like and high is None:
            valid = None
        return as_integer_type(rng, value), valid, f"huge int {value}"
    if roll < 0.55:
        value = float(low) + 0.5
        return value, False, f"float {value} for int"
    if roll < 0.65:
        return bool(rng.integers(2)), False, "bool for int"
    if roll < 0.72:
        value = low if high is None else min(low + 1, high)
        return float(value), None, f"integral float {float(value)} for int"
    bad = pick(rng, NOT_NUMBERS)
    return bad, bad is None and optional, f"{type(bad).__name__} for int"


def real(
    rng: np.random.Generator,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    typical: tuple[float, float] | None = None,
    optional: bool = False,
) -> tuple[Any, bool | None, str]:
    """A real argument valid in the interval (finite only), or a hostile one.

    ``optional``: None is a valid value (the argument's default).
    """
    a, b = typical if typical is not None else (max(low, -10.0), min(high, 10.0))
    if not chance(rng, HOSTILE):
        edges = [x for x in (low, high) if math.isfinite(x)]
        if edges and chance(rng, 0.1):
            value = float(pick(rng, edges))
            return value, _inside(value, low, high, low_open, high_open), f"edge real {value!r}"
        value = float(rng.uniform(a, b))
        convert = pick(rng, (float, float, np.float64, np.float32, int if b - a > 4 else float))
        converted = convert(value)
        valid = _inside(float(converted), low, high, low_open, high_open)
        return converted, valid, f"real {converted!r}"
    roll = rng.random()
    if roll < 0.5:
        value = float(pick(rng, SPECIAL_FLOATS))
        valid = math.isfinite(value) and _inside(value, low, high, low_open, high_open)
        return value, valid, f"special real {value!r}"
    if roll < 0.6:
        value = int(rng.integers(-3, 4))
        return value, _inside(value, low, high, low_open, high_open), f"int {value} for real"
    if roll < 0.7:
        return bool(rng.integers(2)), False, "bool for real"
    bad = pick(rng, NOT_NUMBERS)
    return bad, bad is None and optional, f"{type(bad).__name__} for real"


def _inside(value: float, low: float, high: float, low_open: bool, high_open: bool) -> bool:
    if not math.isfinite(value):
        return False
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return above and below


def choice(rng: np.random.Generator, options: Sequence[str]) -> tuple[Any, bool | None, str]:
    """One of ``options``, or a wrong string, a near miss, a non-string or an array."""
    if not chance(rng, HOSTILE):
        value = str(pick(rng, options))
        return value, True, f"option {value!r}"
    wrong: list[Any] = [
        "",
        "nonsense",
        str(pick(rng, options)).upper(),
        str(pick(rng, options)) + " ",
        None,
        0,
        1.5,
        b"x",
        [str(pick(rng, options))],
        np.array([str(pick(rng, options)), "x"]),
        np.str_("nonsense"),
    ]
    value = pick(rng, wrong)
    return value, False, f"bad option {value!r}"


def seed(rng: np.random.Generator, *, optional: bool = False) -> tuple[Any, bool | None, str]:
    """A seed: thrifty takes integers in ``[0, 2**64)``."""
    return integer(rng, 0, 2**64 - 1, typical=int(rng.integers(0, 1000)), optional=optional)


def flag(rng: np.random.Generator) -> tuple[Any, bool | None, str]:
    roll = rng.random()
    if roll < 0.85:
        value = bool(rng.integers(2))
        return value, True, f"bool {value}"
    bad = pick(rng, (0, 1, "yes", None, np.bool_(True), 1.0))
    return bad, None, f"{type(bad).__name__} for bool"


# --- arrays ------------------------------------------------------------------------------


def floats(
    rng: np.random.Generator, shape: tuple[int, ...], *, scale: str | None = None
) -> np.ndarray[Any, Any]:
    """Finite float64 values at a random (or the given) magnitude."""
    scale = scale or str(pick(rng, ("unit", "unit", "unit", "huge", "tiny", "subnormal", "int")))
    x = rng.standard_normal(shape)
    if scale == "huge":
        return x * 1e300
    if scale == "tiny":
        return x * 1e-300
    if scale == "subnormal":
        return x * 1e-310
    if scale == "int":
        return np.round(x * 4.0)
    return x


def relayout(
    rng: np.random.Generator, a: np.ndarray[Any, Any], *, lists: bool = True
) -> tuple[Any, str]:
    """The same values in another memory layout or container; thrifty must not care.

    ``lists``: a nested list may stand in for the array (not where a dtype is required).
    """
    roll = int(rng.integers(9))
    if roll == 0 or a.ndim == 0:
        return a, "contiguous"
    if roll == 1:
        return np.asfortranarray(a), "fortran"
    if roll == 2:
        big = np.zeros((*a.shape[:-1], a.shape[-1] * 2 + 1), dtype=a.dtype)
        big[..., 1::2] = a
        return big[..., 1::2], "strided view"
    if roll == 3:
        flipped = np.ascontiguousarray(np.flip(a, axis=-1))
        return np.flip(flipped, axis=-1), "negative strides"
    if roll == 4 and a.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2), "transposed"
    if roll == 5 and a.dtype != np.uint64 and lists and a.size:
        return a.tolist(), "list"
    if roll == 6:
        frozen = a.copy()
        frozen.flags.writeable = False
        return frozen, "read-only"
    if roll == 7:
        tensor = _torch_tensor(a)
        if tensor is not None:
            return tensor, "torch tensor"
    if roll == 8 and a.ndim >= 1 and a.shape[-1] > 0:
        tensor = _torch_tensor(np.flip(a, axis=-1).copy())
        if tensor is not None:
            return tensor.flip(-1), "non-contiguous torch tensor"
    return a, "contiguous"


def _torch_tensor(a: np.ndarray[Any, Any]) -> Any:
    if a.dtype in (np.uint16, np.uint32, np.uint64):
        return None
    import torch

    return torch.from_numpy(a.copy())


def spoil(
    rng: np.random.Generator,
    a: np.ndarray[Any, Any],
    *,
    finite: bool = True,
    kinds: str = "f",
) -> tuple[Any, bool | None, str]:
    """A hostile stand-in for the valid array ``a``.

    ``finite``: NaN and infinity are refused. ``kinds``: the dtype kinds accepted. Returns
    the value, whether it is valid (None when it depends on what the callee makes of it)
    and a label.
    """
    roll = int(rng.integers(12))
    if roll == 0 and a.size and a.dtype.kind == "f":
        bad = a.astype(np.float64).copy()
        bad.reshape(-1)[int(rng.integers(a.size))] = pick(rng, (math.nan, math.inf, -math.inf))
        return bad, (None if not finite else False), "non-finite entry"
    if roll == 1:
        dtype = pick(
            rng, (np.complex128, object, np.str_, np.bool_, np.int8, np.uint64, np.float16)
        )
        try:
            converted = a.astype(dtype)
        except (TypeError, ValueError, OverflowError):
            converted = a.astype(object)
            dtype = object
        kind = np.dtype(dtype).kind
        valid: bool | None = False if kind not in kinds else None
        return converted, valid, f"dtype {np.dtype(dtype)}"
    if roll == 2:
        return a.reshape(-1), (False if a.ndim != 1 else None), "flattened"
    if roll == 3:
        return a[None], False, "extra axis"
    if roll == 4:
        shape = list(a.shape)
        if shape:
            shape[int(rng.integers(len(shape)))] = 0
        return np.zeros(shape, dtype=a.dtype), None, "empty"
    if roll == 5:
        bad = pick(rng, NOT_NUMBERS)
        # Lists, tuples and arrays are array-likes: some are fine, some have the wrong kind.
        valid = None if isinstance(bad, (list, tuple, np.ndarray)) else False
        return bad, valid, f"{type(bad).__name__} for array"
    if roll == 6:
        return np.float64(1.0) if chance(rng, 0.5) else 1.0, False, "scalar for array"
    if roll == 7 and a.dtype.kind in "iuf" and a.size:
        bad = a.copy()
        bad.reshape(-1)[int(rng.integers(a.size))] = -1 if a.dtype.kind != "u" else 0
        return bad, None, "a negative or zero entry"
    if roll == 8 and a.dtype.kind == "f":
        return a * pick(rng, (1e300, 1e-300, 1e308)), None, "extreme magnitude"
    if roll == 9 and a.size:
        return np.broadcast_to(a.reshape(-1)[:1], a.shape), None, "zero strides (broadcast)"
    if roll == 10 and a.ndim >= 1:
        shape = list(a.shape)
        shape[-1] += int(pick(rng, (1, -1))) if shape[-1] > 0 else 1
        return np.resize(a, shape), None, "one column more or less"
    return [[1, 2], [3]], False, "ragged list"
