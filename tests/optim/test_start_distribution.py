"""start_distribution: Drop-Muon's start-index probabilities from costs and smoothness."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty import optim
from thrifty.errors import (
    DTypeError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
)
from thrifty.optim._start_distribution import expected_work

positive = st.floats(min_value=1e-3, max_value=1e3)
# A loaded machine misses hypothesis's 200 ms deadline on tiny examples: no deadline.
relaxed = settings(deadline=None)


@st.composite
def layer_values(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    layers = draw(st.integers(min_value=1, max_value=8))
    smoothness = draw(st.lists(positive, min_size=layers, max_size=layers))
    cost = draw(st.lists(positive, min_size=layers, max_size=layers))
    return smoothness, cost


def updated(p: np.ndarray) -> np.ndarray:
    """q_i, the probability that layer i is updated."""
    return np.cumsum(p)


@relaxed
@given(layer_values())
def test_probabilities_are_a_distribution(values: tuple[list[float], list[float]]) -> None:
    p = optim.start_distribution(*values)
    assert p.dtype == np.float64
    assert p.shape == (len(values[0]),)
    assert (p >= 0).all()
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)


def prefix_condition(smoothness: list[float], cost: list[float]) -> bool:
    """Every prefix's L/c ratio at least the whole network's (up to rounding)."""
    total = math.fsum(smoothness) / math.fsum(cost)
    return all(
        math.fsum(smoothness[: k + 1]) >= math.fsum(cost[: k + 1]) * total * (1 - 1e-9)
        for k in range(len(cost))
    )


@relaxed
@given(layer_values())
def test_full_updates_exactly_when_no_prefix_is_flatter_than_the_whole(
    values: tuple[list[float], list[float]],
) -> None:
    smoothness, cost = values
    p = optim.start_distribution(smoothness, cost)
    total = math.fsum(smoothness) / math.fsum(cost)
    # Away from the boundary (a prefix ratio within rounding of the total) both sides agree.
    ratios = [math.fsum(smoothness[: k + 1]) / math.fsum(cost[: k + 1]) for k in range(len(cost))]
    if any(abs(r / total - 1) < 1e-6 for r in ratios[:-1]):
        return
    assert (p[0] == 1.0) == prefix_condition(smoothness, cost)


@relaxed
@given(st.lists(positive, min_size=1, max_size=8), positive)
def test_constant_ratio_gives_full_updates(cost: list[float], ratio: float) -> None:
    p = optim.start_distribution([ratio * c for c in cost], cost)
    assert p[0] == pytest.approx(1.0, abs=1e-9)
    assert p[1:] == pytest.approx(0.0, abs=1e-9)


@relaxed
@given(st.lists(st.floats(min_value=1.01, max_value=3.0), min_size=1, max_size=7), positive)
def test_rising_ratio_gives_every_start_a_chance(steps: list[float], first: float) -> None:
    ratio = [first]
    for factor in steps:
        ratio.append(ratio[-1] * factor)
    p = optim.start_distribution(ratio, [1.0] * len(ratio))
    assert (p > 0).all()
    # Unconstrained optimum: q_i proportional to sqrt(L_i / c_i).
    expected = np.sqrt(np.array(ratio) / ratio[-1])
    assert updated(p) == pytest.approx(expected, rel=1e-9)


@settings(deadline=None, max_examples=200)
@given(layer_values(), st.data())
def test_no_rising_q_does_better(
    values: tuple[list[float], list[float]], data: st.DataObject
) -> None:
    smoothness, cost = values
    best = expected_work(updated(optim.start_distribution(smoothness, cost)), smoothness, cost)
    raw = data.draw(
        st.lists(
            st.floats(min_value=1e-3, max_value=1.0),
            min_size=len(cost),
            max_size=len(cost),
        )
    )
    q = np.maximum.accumulate(np.array(raw))
    q = q / q[-1]
    assert best <= expected_work(q, smoothness, cost) * (1 + 1e-9)


def test_cost_only_and_smoothness_only_are_the_special_cases() -> None:
    cost = [8.0, 4.0, 2.0, 1.0]
    assert optim.start_distribution(cost=cost) == pytest.approx(
        optim.start_distribution([1.0] * 4, cost)
    )
    assert optim.start_distribution(smoothness=cost) == pytest.approx(
        optim.start_distribution(cost, [1.0] * 4)
    )
    # Expensive input layers: q rises as 1/sqrt(c) and every start is drawn.
    p = optim.start_distribution(cost=cost)
    assert updated(p) == pytest.approx(np.sqrt(1.0 / np.array(cost)))
    # Smoothness that falls towards the output pools into one run: plain Muon.
    assert optim.start_distribution(smoothness=cost).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_a_fixed_cost_counts_with_the_last_layer() -> None:
    cost = [8.0, 4.0, 2.0, 1.0]
    with_fixed = optim.start_distribution(cost=cost, fixed_cost=5.0)
    assert with_fixed == pytest.approx(optim.start_distribution(cost=[8.0, 4.0, 2.0, 6.0]))
    # A step that costs more whatever s leaves less to save: the input layers rise.
    assert with_fixed[0] > optim.start_distribution(cost=cost)[0]
    # Large enough, it makes dropping pointless.
    assert optim.start_distribution(cost=cost, fixed_cost=1e6)[0] == 1.0
    with pytest.raises(InvalidArgumentError) as caught:
        optim.start_distribution(cost=cost, fixed_cost=-1.0)
    assert caught.value.argument == "fixed_cost"


def test_a_violating_pair_is_pooled() -> None:
    # Alone q would be sqrt(4/1) = 2 then sqrt(1/1) = 1: pooled, (4 + 1) / (1 + 1).
    p = optim.start_distribution([4.0, 1.0, 100.0], [1.0, 1.0, 1.0])
    level = math.sqrt(2.5) / 10.0
    assert p == pytest.approx([level, 0.0, 1.0 - level])


def test_drop_muon_takes_it_as_its_sampler() -> None:
    import torch

    layers = [torch.nn.Linear(3, 3), torch.nn.Linear(3, 2)]
    p = optim.start_distribution(cost=[4.0, 1.0])
    opt = optim.DropMuon(layers, lr=0.01, sampler=p)
    assert opt.distribution().tolist() == pytest.approx(p.tolist())


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({}, InvalidArgumentError, "smoothness"),
        ({"smoothness": [1.0, 2.0], "cost": [1.0]}, ShapeError, "cost"),
        ({"smoothness": []}, ShapeError, "smoothness"),
        ({"cost": [[1.0, 2.0]]}, ShapeError, "cost"),
        ({"cost": [1.0, float("nan")]}, NonFiniteError, "cost"),
        ({"smoothness": [1.0, float("inf")]}, NonFiniteError, "smoothness"),
        ({"smoothness": [1.0, 0.0]}, InvalidArgumentError, "smoothness"),
        ({"cost": [-1.0, 1.0]}, InvalidArgumentError, "cost"),
        ({"cost": ["a", 1.0]}, DTypeError, "cost"),
    ],
)
def test_bad_inputs_name_the_argument(
    kwargs: dict[str, object], error: type[Exception], argument: str
) -> None:
    with pytest.raises(error) as caught:
        optim.start_distribution(**kwargs)  # type: ignore[arg-type]
    assert caught.value.argument == argument  # type: ignore[attr-defined]
