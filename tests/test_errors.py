from __future__ import annotations

import numpy as np
import pytest

import thrifty
from thrifty import _extras, errors, steps


def test_every_error_derives_from_thrifty_error_and_its_standard_mixin() -> None:
    assert issubclass(errors.ShapeError, thrifty.ThriftyError)
    assert issubclass(errors.ShapeError, ValueError)
    assert issubclass(errors.NonFiniteError, ValueError)
    assert issubclass(errors.DTypeError, TypeError)
    assert issubclass(errors.MissingExtraError, ImportError)
    assert issubclass(errors.DeviceError, RuntimeError)


def test_rust_errors_arrive_as_thrifty_errors_naming_the_argument() -> None:
    with pytest.raises(
        thrifty.ShapeError, match=r"cost: must be square, got shape \(3, 4\)"
    ) as info:
        steps.optimal_path(np.zeros((3, 4)), 2)
    assert info.value.argument == "cost"


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _extras.require.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(thrifty.MissingExtraError, match=r"thrifty\[plot\]"):
        _extras.require("matplotlib")
    _extras.require.cache_clear()


def test_gpu_array_without_cuda_path_is_refused_clearly() -> None:
    class FakeCupy:
        pass

    FakeCupy.__module__ = "cupy._core.core"
    with pytest.raises(thrifty.DeviceError, match="cost is on a GPU"):
        steps.optimal_path(FakeCupy(), 2)


def test_torch_cpu_tensors_are_borrowed_without_copy() -> None:
    torch = pytest.importorskip("torch")
    from thrifty._arrays import host_array

    tensor = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    array = host_array(tensor, "x", dtype=np.float64)
    assert np.shares_memory(array, tensor.numpy())


def test_wrong_dtype_is_a_dtype_error() -> None:
    with pytest.raises(thrifty.DTypeError, match="cost must have a floating dtype, got int64"):
        steps.optimal_path(np.ones((4, 4), dtype=np.int64), 2)
