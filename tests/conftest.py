"""Shared test set-up: the ``gpu`` marker skips when CuPy sees no CUDA device."""

from __future__ import annotations

import pytest

from thrifty import _cuda


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    if _cuda.device_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (CuPy sees none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
