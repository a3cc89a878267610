"""thrifty: combinatorial cores that make machine-learning training and sampling cheaper.

Every core is reachable as ``thrifty.<core>`` (``thrifty.steps``, ``thrifty.coreset``, ...) and
is imported on first use, so that ``import thrifty`` stays fast and the optional extras (torch,
CuPy) are only needed by what uses them.

Examples
--------
>>> import thrifty
>>> from thrifty import steps
>>> steps.time_grid(4).tolist()
[0.0, 0.25, 0.5, 0.75, 1.0]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from thrifty._native import __version__
from thrifty.errors import (
    DeviceError,
    DTypeError,
    InternalError,
    InvalidArgumentError,
    MissingExtraError,
    NonFiniteError,
    ShapeError,
    ThriftyError,
)

if TYPE_CHECKING:
    from thrifty import collective, coreset, diloco, hamming, optim, schedule, steps

__all__ = [
    "DTypeError",
    "DeviceError",
    "InternalError",
    "InvalidArgumentError",
    "MissingExtraError",
    "NonFiniteError",
    "ShapeError",
    "ThriftyError",
    "__version__",
    "collective",
    "coreset",
    "diloco",
    "hamming",
    "optim",
    "schedule",
    "steps",
]

_CORES = {"collective", "coreset", "diloco", "hamming", "optim", "schedule", "steps"}


def __getattr__(name: str) -> Any:
    if name in _CORES:
        return importlib.import_module(f"thrifty.{name}")
    raise AttributeError(f"module 'thrifty' has no attribute {name!r}")
