"""thrifty._checks: the scalar argument checks every core shares."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thrifty._checks import check_int, check_positive, check_real, check_seed
from thrifty.errors import InvalidArgumentError


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(0, 1000))
def test_check_int_accepts_exactly_the_range(value: int, minimum: int, span: int) -> None:
    maximum = minimum + span
    inside = minimum <= value <= maximum
    if inside:
        assert check_int(value, "n", minimum=minimum, maximum=maximum) == value
        assert type(check_int(np.int32(value), "n", minimum=minimum, maximum=maximum)) is int
    else:
        with pytest.raises(InvalidArgumentError) as caught:
            check_int(value, "n", minimum=minimum, maximum=maximum)
        assert caught.value.argument == "n"
        assert f"in {minimum}..={maximum}" in str(caught.value)


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, np.float64(2.0)])
def test_check_int_refuses_what_is_not_an_integer(value: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_int(value, "count", minimum=0)
    assert caught.value.argument == "count"


@pytest.mark.parametrize(
    ("bounds", "inside", "outside", "said"),
    [
        ({"low": 0.0, "high": 1.0}, [0.0, 0.5, 1.0], [-1e-9, 1.0 + 1e-9], "in [0, 1]"),
        ({"low": 0.0, "high": 1.0, "high_open": True}, [0.0, 0.999], [1.0], "in [0, 1)"),
        ({"low": 0.0, "high": 1.0, "low_open": True}, [1e-300, 1.0], [0.0], "in (0, 1]"),
        ({"low": 0.0}, [0.0, 1e300], [-1e-300], ">= 0"),
        ({"high": 2.0, "high_open": True}, [-1e300, 1.9], [2.0], "< 2"),
        ({}, [-1e300, 0.0, 1e300], [], "finite number,"),
    ],
)
def test_check_real_bounds_open_and_closed(
    bounds: dict[str, Any], inside: list[float], outside: list[float], said: str
) -> None:
    for value in inside:
        assert check_real(np.float32(value) if value == 0.5 else value, "x", **bounds) == value
    for value in [*outside, math.inf, -math.inf, math.nan]:
        with pytest.raises(InvalidArgumentError) as caught:
            check_real(value, "x", **bounds)
        assert caught.value.argument == "x"
        assert said in str(caught.value), str(caught.value)


@pytest.mark.parametrize("value", [True, "0.5", None, [0.5], 1j])
def test_check_real_refuses_what_is_not_a_real_number(value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="x must be a number"):
        check_real(value, "x")


def test_check_positive_and_check_seed() -> None:
    assert check_positive(np.int64(3), "lr") == 3.0
    for value in (0, -0.0, -1):
        with pytest.raises(InvalidArgumentError, match="lr must be a finite number > 0"):
            check_positive(value, "lr")
    assert check_seed(np.uint64(2**64 - 1)) == 2**64 - 1
    for value in (-1, 2**64):
        with pytest.raises(InvalidArgumentError) as caught:
            check_seed(value, "worker_seed")
        assert caught.value.argument == "worker_seed"
