"""The DP against exhaustive enumeration, and every bad input it must refuse."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import thrifty
from thrifty import steps


def brute_force(cost: np.ndarray, k: int, w: float = 1.0) -> tuple[float, list[int]]:
    """Every path of k jumps from 0 to n, in lexicographic order; the first optimum wins."""
    n = cost.shape[0] - 1
    best: tuple[float, list[int]] = (np.inf, [])
    for middle in itertools.combinations(range(1, n), k - 1):
        nodes = [0, *middle, n]
        total = sum(w**m * cost[a, b] for m, (a, b) in enumerate(itertools.pairwise(nodes)))
        if total < best[0]:
            best = (total, nodes)
    return best


small_costs = st.integers(2, 12).flatmap(
    lambda size: arrays(np.float64, (size, size), elements=st.integers(0, 3).map(float))
)


@settings(max_examples=150, deadline=None)
@given(cost=small_costs)
def test_dp_equals_brute_force_for_every_k_with_ties(cost: np.ndarray) -> None:
    n = cost.shape[0] - 1
    paths = steps.optimal_paths(cost, n)
    for k in range(1, n + 1):
        best_cost, best_nodes = brute_force(cost, k)
        nodes = steps.optimal_path(cost, k)
        assert nodes.tolist() == best_nodes
        assert steps.optimal_path_cost(cost, k) == pytest.approx(best_cost)
        assert paths[k].tolist() == nodes.tolist()


@settings(max_examples=60, deadline=None)
@given(cost=small_costs, w=st.sampled_from([0.5, 1.15, 2.0]))
def test_future_weight_matches_brute_force(cost: np.ndarray, w: float) -> None:
    n = cost.shape[0] - 1
    for k in range(1, n + 1):
        best_cost, _ = brute_force(cost, k, w)
        assert steps.optimal_path_cost(cost, k, future_weight=w) == pytest.approx(best_cost)


def test_monge_matrix_takes_the_fast_path_with_the_same_answer() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.random(301))
    cost = np.triu((t[None, :] - t[:, None]) ** 2 * 1e3, 1)
    assert steps.is_monge(cost)
    for k in (1, 5, 37, 300):
        fast = steps.optimal_path(cost, k, strategy="monge")
        full = steps.optimal_path(cost, k, strategy="full")
        assert fast.tolist() == full.tolist()


def test_path_shape_and_order() -> None:
    cost = np.triu(np.random.default_rng(0).random((51, 51)), 1)
    nodes = steps.optimal_path(cost, 7)
    assert nodes.dtype == np.int64
    assert nodes[0] == 0
    assert nodes[-1] == 50
    assert len(nodes) == 8
    assert (np.diff(nodes) > 0).all()


@pytest.mark.parametrize(
    ("cost", "k", "error", "match"),
    [
        (np.array([[0, np.nan], [0, 0.0]]), 1, thrifty.NonFiniteError, "NaN"),
        (np.triu(np.full((4, 4), np.inf), 1), 2, thrifty.NonFiniteError, "cost"),
        (np.triu(np.ones((4, 4)), 1), 4, thrifty.InvalidArgumentError, "k"),
        (np.triu(np.ones((4, 4)), 1), 0, thrifty.InvalidArgumentError, "k"),
        (np.ones((3, 4)), 1, thrifty.ShapeError, "square"),
        (-np.triu(np.ones((4, 4)), 1), 2, thrifty.InvalidArgumentError, "must be >= 0"),
        (np.ones((4, 4), dtype=np.int32), 2, thrifty.DTypeError, "floating"),
        (np.ones(4), 1, thrifty.ShapeError, "2-D"),
        (np.zeros((1, 1)), 1, thrifty.InvalidArgumentError, "cost"),
    ],
)
def test_bad_input_is_refused(cost: np.ndarray, k: int, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        steps.optimal_path(cost, k)


def test_nan_below_the_diagonal_is_ignored() -> None:
    cost = np.triu(np.ones((5, 5)), 1)
    cost[np.tril_indices(5)] = np.nan
    assert steps.optimal_path(cost, 2).tolist() == [0, 1, 4]


def test_bad_future_weight_and_strategy() -> None:
    cost = np.triu(np.ones((4, 4)), 1)
    with pytest.raises(thrifty.InvalidArgumentError, match="future_weight"):
        steps.optimal_path(cost, 2, future_weight=0.0)
    with pytest.raises(thrifty.InvalidArgumentError, match="strategy"):
        steps.optimal_path(cost, 2, strategy="greedy")  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    with pytest.raises(thrifty.InvalidArgumentError, match="Monge"):
        steps.optimal_path(np.triu(rng.random((30, 30)), 1), 3, strategy="monge")


def test_an_optimal_cost_past_the_float64_range_is_an_error_naming_cost() -> None:
    # Every path's weighted cost overflows to inf; the tie rule's pick would say nothing.
    cost = np.triu(np.full((6, 6), 1e308), 1)
    with pytest.raises(thrifty.NonFiniteError) as raised:
        steps.optimal_path(cost, 5)
    assert raised.value.argument == "cost"
    with pytest.raises(thrifty.NonFiniteError):
        steps.optimal_path(np.triu(np.ones((8, 8)), 1), 7, future_weight=2.0**200)


def test_jump_errors_check_shapes_before_allocating_the_matrix() -> None:
    from thrifty import _native

    # A zero-size batch can claim a million nodes: 8 TB of result if allocated first.
    empty = np.empty((10**6, 0, 3))
    with pytest.raises(thrifty.ThriftyError) as raised:
        _native.jump_errors(empty[:-1], empty[:-1], empty, np.linspace(0.0, 1.0, 10))
    assert not isinstance(raised.value, thrifty.InternalError)
    assert raised.value.argument is not None
