"""Intake of texts (bytes, str, integer arrays) and of packed binary codes."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from thrifty._arrays import host_array, is_gpu_array
from thrifty.errors import DTypeError, InvalidArgumentError, ShapeError

UInt32Array = np.ndarray[Any, np.dtype[np.uint32]]
UInt8Array = np.ndarray[Any, np.dtype[np.uint8]]

Kind = Literal["bytes", "str", "array"]

_U32_MAX = 2**32 - 1


def text_kind(x: object) -> Kind:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(x, str):
        return "str"
    return "array"


def symbols(x: Any, argument: str) -> UInt32Array:
    """``x`` as a contiguous 1-D uint32 array of symbols, without copying a uint32 array.

    ``bytes`` give their byte values, ``str`` its code points (surrogates included), and an
    integer NumPy array or CPU torch tensor its values, which must lie in ``[0, 2**32)``.
    """
    if isinstance(x, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(x), dtype=np.uint8).astype(np.uint32)
    if isinstance(x, str):
        # UTF-32 holds every code point as itself; surrogatepass keeps lone surrogates too.
        encoded = x.encode("utf-32-le", "surrogatepass")
        return np.frombuffer(encoded, dtype="<u4").astype(np.uint32)
    array = host_array(
        x,
        argument,
        kinds="iu",
        gpu_hint="text-to-pattern distances run on the CPU; move the data there first",
    )
    if array.ndim != 1:
        raise ShapeError(f"{argument} must be 1-D, got shape {array.shape}", argument)
    if array.dtype == np.uint32:
        return np.ascontiguousarray(array, dtype=np.uint32)
    narrow_unsigned = array.dtype.kind == "u" and array.dtype.itemsize < 4
    if array.size and not narrow_unsigned:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > _U32_MAX:
            bad = low if low < 0 else high
            raise InvalidArgumentError(
                f"{argument} symbols must lie in [0, 2**32), got {bad}", argument
            )
    return array.astype(np.uint32)


def text_and_patterns(
    text: Any, patterns: list[Any], pattern_argument: str
) -> tuple[UInt32Array, list[UInt32Array]]:
    """The text and its patterns as uint32 symbols; all must be the same kind of input."""
    kind = text_kind(text)
    converted = symbols(text, "text")
    out = []
    for pattern in patterns:
        other = text_kind(pattern)
        if other != kind:
            raise DTypeError(
                f"{pattern_argument} must be the same kind of input as text ({kind}), got {other}",
                pattern_argument,
            )
        array = symbols(pattern, pattern_argument)
        if array.size == 0:
            raise InvalidArgumentError(f"{pattern_argument} must not be empty", pattern_argument)
        if array.size > converted.size:
            raise ShapeError(
                f"{pattern_argument} is longer than the text: "
                f"{array.size} symbols against {converted.size}",
                pattern_argument,
            )
        out.append(array)
    return converted, out


def codes(x: Any, argument: str) -> UInt8Array:
    """Packed codes: a 2-D uint8 NumPy array or CPU torch tensor, shared without copying."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and not is_gpu_array(x) and str(dtype) not in ("uint8", "torch.uint8"):
        raise DTypeError(
            f"{argument} must be packed codes of dtype uint8 (hamming.pack makes them from "
            f"0/1 bits), got dtype {dtype}",
            argument,
        )
    array = host_array(
        x,
        argument,
        kinds="u",
        dtype=np.uint8,
        gpu_hint="pass every code array on the same device (or all on the CPU)",
    )
    if array.ndim != 2:
        raise ShapeError(
            f"{argument} must be 2-D (codes, bytes per code), got shape {array.shape}", argument
        )
    if array.shape[1] == 0:
        raise ShapeError(
            f"{argument} must hold codes of at least one byte, got shape {array.shape}",
            argument,
        )
    return array


def same_width(first: tuple[str, Any], second: tuple[str, Any]) -> None:
    """Both code arrays must hold codes of the same number of bytes; names the second."""
    (name_a, a), (name_b, b) = first, second
    if int(a.shape[1]) != int(b.shape[1]):
        raise ShapeError(
            f"{name_b} must hold codes of {int(a.shape[1])} bytes like {name_a}, "
            f"got {int(b.shape[1])} bytes per code",
            name_b,
        )
