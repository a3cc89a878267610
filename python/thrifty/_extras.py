"""Lazy imports of the optional extras, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

from thrifty.errors import MissingExtraError

# module -> the extra of thrifty that installs it
_EXTRA_OF = {
    "torch": "torch",
    "cupy": "cuda",
    "cuda.bindings.nvrtc": "cuda",
    "tqdm": "progress",
    "tqdm.auto": "progress",
    "matplotlib": "plot",
    "matplotlib.pyplot": "plot",
    "diffusers": "diffusers",
    "sklearn": "datasets",
    "sklearn.datasets": "datasets",
}


@cache
def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``thrifty[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = _EXTRA_OF.get(module.split(".")[0], _EXTRA_OF.get(module, "all"))
        raise MissingExtraError(
            f"{module} is needed for this; install it with: pip install 'thrifty[{extra}]'"
        ) from error


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without raising."""
    try:
        require(module)
    except MissingExtraError:
        return False
    return True
