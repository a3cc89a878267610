"""Calling a user's velocity field ``(x, t) -> v`` on NumPy arrays or torch tensors.

The time is passed as a 1-D array of length ``batch`` in ``x``'s own framework, dtype and
device, the way flow-matching networks take it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from thrifty._arrays import is_cupy_array, is_torch_tensor
from thrifty._checks import check_int
from thrifty.errors import DTypeError, InvalidArgumentError, ShapeError

Velocity = Callable[[Any, Any], Any]


def check_velocity(velocity: Any, argument: str = "velocity") -> Velocity:
    """A callable ``(x, t) -> v``; anything else is refused before any work starts."""
    if not callable(velocity):
        raise InvalidArgumentError(
            f"{argument} must be callable as {argument}(x, t), got {type(velocity).__name__}",
            argument,
        )
    return velocity  # type: ignore[no-any-return]


def check_state(x: Any, argument: str) -> Any:
    """Accept a NumPy floating array, a torch floating tensor or a CuPy array of >= 2 dims."""
    if not (isinstance(x, np.ndarray) or is_torch_tensor(x) or is_cupy_array(x)):
        raise DTypeError(
            f"{argument} must be a numpy array or a torch tensor of shape (batch, *state), "
            f"got {type(x).__name__}",
            argument,
        )
    floating = bool(x.is_floating_point()) if is_torch_tensor(x) else x.dtype.kind == "f"
    if not floating:
        raise DTypeError(f"{argument} must be floating point, got dtype {x.dtype}", argument)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ShapeError(
            f"{argument} must have shape (batch, *state) with batch >= 1, got {tuple(x.shape)}",
            argument,
        )
    return x


def time_like(x: Any, t: float) -> Any:
    """A length-``batch`` vector filled with ``t``, in ``x``'s framework, dtype and device."""
    if is_torch_tensor(x):
        return x.new_full((x.shape[0],), float(t))
    if is_cupy_array(x):
        import cupy

        return cupy.full((x.shape[0],), t, dtype=x.dtype)
    return np.full((x.shape[0],), t, dtype=x.dtype)


def evaluate(velocity: Velocity, x: Any, t: float) -> Any:
    """``velocity(x, t)``, checked to return an array of ``x``'s type and shape."""
    v = velocity(x, time_like(x, t))
    if type(v) is not type(x) and not (is_torch_tensor(v) and is_torch_tensor(x)):
        raise DTypeError(
            f"velocity must return the same kind of array as its input "
            f"({type(x).__name__}), got {type(v).__name__}",
            "velocity",
        )
    if tuple(v.shape) != tuple(x.shape):
        raise ShapeError(
            f"velocity must return the shape of its input {tuple(x.shape)}, got {tuple(v.shape)}",
            "velocity",
        )
    return v


@contextlib.contextmanager
def inference(x: Any) -> Iterator[None]:
    """No autograd graph while sampling or measuring: it would only cost memory."""
    if is_torch_tensor(x):
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def to_host(x: Any) -> np.ndarray[Any, Any]:
    """A NumPy view (CPU tensors) or copy (GPU arrays) of ``x``."""
    if is_torch_tensor(x):
        return np.asarray(x.detach().cpu().numpy())
    if is_cupy_array(x):
        return np.asarray(x.get())
    return np.asarray(x)


def empty(like: Any, shape: tuple[int, ...]) -> Any:
    """An uninitialised array of ``shape`` in ``like``'s framework, dtype and device."""
    if is_torch_tensor(like):
        return like.new_empty(shape)
    if is_cupy_array(like):
        import cupy

        return cupy.empty(shape, dtype=like.dtype)
    return np.empty(shape, dtype=like.dtype)


def array_like(like: Any, values: np.ndarray[Any, Any]) -> Any:
    """``values`` in ``like``'s framework, dtype and device."""
    if is_torch_tensor(like):
        return like.new_tensor(values)
    if is_cupy_array(like):
        import cupy

        return cupy.asarray(values, dtype=like.dtype)
    return values.astype(like.dtype)


def batch_size_or(batch_size: int | None, samples: int, default: int) -> int:
    """A validated ``batch_size`` (``default`` when None), at most ``samples``."""
    if batch_size is None:
        return max(1, min(samples, default))
    return min(check_int(batch_size, "batch_size", minimum=1), samples)
