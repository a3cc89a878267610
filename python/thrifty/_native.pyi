# Stub of the Rust extension module; `python -m mypy.stubtest thrifty._native` keeps it honest.
from typing import Any

import numpy as np

__all__ = ["__version__", "is_monge", "jump_errors", "optimal_path", "optimal_paths"]

__version__: str

_Path = tuple[np.ndarray[Any, np.dtype[np.int64]], float]

def optimal_path(
    cost: np.ndarray[Any, np.dtype[np.float64]],
    k: int,
    future_weight: float = 1.0,
    strategy: str = "auto",
) -> _Path: ...
def optimal_paths(
    cost: np.ndarray[Any, np.dtype[np.float64]],
    k_max: int,
    future_weight: float = 1.0,
    strategy: str = "auto",
) -> list[_Path]: ...
def is_monge(cost: np.ndarray[Any, np.dtype[np.float64]]) -> bool: ...
def jump_errors(
    starts: np.ndarray[Any, Any],
    velocities: np.ndarray[Any, Any],
    targets: np.ndarray[Any, Any],
    times: np.ndarray[Any, np.dtype[np.float64]],
    metric: str = "l2",
) -> np.ndarray[Any, np.dtype[np.float64]]: ...
