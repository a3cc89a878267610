"""thrifty.schedule.lgreco against enumeration of every level vector."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty import schedule
from thrifty.errors import DTypeError, InvalidArgumentError, NonFiniteError, ShapeError


def brute_force(errors: Any, sizes: Any, budget: float) -> tuple[float, float, list[int]] | None:
    """The least (size, error, levels) over all feasible level vectors."""
    layers, candidates = errors.shape
    best = None
    for levels in itertools.product(range(candidates), repeat=layers):
        error = sum(float(errors[layer, c]) for layer, c in enumerate(levels))
        size = sum(float(sizes[layer, c]) for layer, c in enumerate(levels))
        if error <= budget and (best is None or (size, error, list(levels)) < best):
            best = (size, error, list(levels))
    return best


def rounded_up(errors: Any, budget: float, buckets: int) -> Any:
    """Errors as whole numbers of budget / buckets, rounded up the way the DP rounds them."""
    unit = budget / buckets
    out = np.zeros(errors.shape, dtype=np.int64)
    for index, e in np.ndenumerate(errors):
        units = math.ceil(e / unit)
        while units * unit < e:
            units += 1
        out[index] = units
    return out


tables = st.integers(1, 4).flatmap(
    lambda layers: st.integers(1, 3).flatmap(
        lambda candidates: st.tuples(
            st.lists(st.integers(0, 6), min_size=layers * candidates, max_size=layers * candidates),
            st.lists(st.integers(0, 9), min_size=layers * candidates, max_size=layers * candidates),
            st.just((layers, candidates)),
        )
    )
)


@settings(max_examples=300, deadline=None)
@given(tables, st.integers(0, 24))
def test_integer_errors_match_brute_force_exactly(table: Any, budget: int) -> None:
    errors_list, sizes_list, shape = table
    errors = np.array(errors_list, dtype=np.int64).reshape(shape)
    sizes = np.array(sizes_list, dtype=np.float64).reshape(shape)
    best = brute_force(errors, sizes, budget)
    if best is None:
        with pytest.raises(InvalidArgumentError) as caught:
            schedule.lgreco(errors, sizes, budget)
        assert caught.value.argument == "budget"
        return
    levels = schedule.lgreco(errors, sizes, budget)
    assert levels.dtype == np.int64
    assert levels.tolist() == best[2]


@settings(max_examples=200, deadline=None)
@given(
    tables,
    st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12),
    st.floats(0.5, 3.0),
    st.integers(1, 40),
)
def test_float_errors_are_feasible_and_between_the_optima(
    table: Any, noise: list[float], budget: float, buckets: int
) -> None:
    _, sizes_list, shape = table
    errors = np.array(noise[: shape[0] * shape[1]]).reshape(shape)
    sizes = np.array(sizes_list, dtype=np.float64).reshape(shape)
    true_best = brute_force(errors, sizes, budget)
    rounded_best = brute_force(rounded_up(errors, budget, buckets), sizes, buckets)
    if rounded_best is None:
        with pytest.raises(InvalidArgumentError) as caught:
            schedule.lgreco(errors, sizes, budget, buckets=buckets)
        assert caught.value.argument == "budget"
        return
    assert true_best is not None  # rounding up only removes choices
    levels = schedule.lgreco(errors, sizes, budget, buckets=buckets)
    rows = np.arange(shape[0])
    assert errors[rows, levels].sum() <= budget * (1 + 1e-12)
    size = sizes[rows, levels].sum()
    assert true_best[0] <= size <= rounded_best[0]
    assert size == rounded_best[0]  # the DP is exact on the rounded problem


def test_picks_the_smallest_size_and_breaks_ties_by_error_then_level() -> None:
    errors = np.array([[0, 3], [0, 2]])
    sizes = np.array([[10.0, 1.0], [10.0, 1.0]])
    assert schedule.lgreco(errors, sizes, 5).tolist() == [1, 1]
    # [1, 0] and [0, 1] both cost 11 bytes; [0, 1] has less error.
    assert schedule.lgreco(errors, sizes, 3).tolist() == [0, 1]
    assert schedule.lgreco(errors, sizes, 1).tolist() == [0, 0]
    # Equal size and error: the lower level index.
    assert schedule.lgreco(np.array([[1, 1]]), np.array([[2.0, 2.0]]), 1).tolist() == [0]


def test_default_float_discretisation_is_feasible() -> None:
    rng = np.random.default_rng(0)
    errors = rng.random((20, 5))
    sizes = rng.random((20, 5)) * 100
    budget = float(errors.min(axis=1).sum() + 2.0)
    levels = schedule.lgreco(errors, sizes, budget)
    assert errors[np.arange(20), levels].sum() <= budget
    # Two units of spare error buy something: the answer beats the least-error levels.
    least_error = sizes[np.arange(20), errors.argmin(axis=1)].sum()
    assert sizes[np.arange(20), levels].sum() < least_error


def test_feasible_budget_lost_to_rounding_says_so() -> None:
    # 0.95 + 0.04 <= 1, but with 2 buckets of 0.5 they round up to 2 + 1 units > 2.
    with pytest.raises(InvalidArgumentError, match="buckets") as caught:
        schedule.lgreco(np.array([[0.95], [0.04]]), np.ones((2, 1)), 1.0, buckets=2)
    assert caught.value.argument == "budget"
    assert schedule.lgreco(np.array([[0.95], [0.04]]), np.ones((2, 1)), 1.0).tolist() == [0, 0]


def test_empty_layers_give_no_levels() -> None:
    assert schedule.lgreco(np.zeros((0, 3)), np.zeros((0, 3)), 1.0).shape == (0,)


@pytest.mark.parametrize(
    ("errors", "sizes", "budget", "kwargs", "kind", "argument"),
    [
        ([[np.nan, 1.0]], [[1.0, 1.0]], 1.0, {}, NonFiniteError, "errors"),
        ([[-1.0, 1.0]], [[1.0, 1.0]], 1.0, {}, InvalidArgumentError, "errors"),
        ([[0.0, 1.0]], [[1.0, np.inf]], 1.0, {}, NonFiniteError, "sizes"),
        ([[0.0, 1.0]], [[1.0, -2.0]], 1.0, {}, InvalidArgumentError, "sizes"),
        ([[0.0, 1.0]], [[1.0, 1.0, 1.0]], 1.0, {}, ShapeError, "sizes"),
        ([0.0, 1.0], [[1.0, 1.0]], 1.0, {}, ShapeError, "errors"),
        ([[0.0, 1.0]], [[1.0, 1.0]], np.nan, {}, NonFiniteError, "budget"),
        ([[0.0, 1.0]], [[1.0, 1.0]], -1.0, {}, InvalidArgumentError, "budget"),
        ([[0.0, 1.0]], [[1.0, 1.0]], True, {}, InvalidArgumentError, "budget"),
        ([[2.0, 3.0]], [[1.0, 1.0]], 1.0, {}, InvalidArgumentError, "budget"),
        ([[0.0, 1.0]], [[1.0, 1.0]], 1.0, {"buckets": 0}, InvalidArgumentError, "buckets"),
        (np.zeros((1, 0)), np.zeros((1, 0)), 1.0, {}, ShapeError, "errors"),
    ],
)
def test_bad_input_is_named(
    errors: Any, sizes: Any, budget: Any, kwargs: Any, kind: type[Exception], argument: str
) -> None:
    with pytest.raises(kind) as caught:
        schedule.lgreco(np.asarray(errors), np.asarray(sizes), budget, **kwargs)
    assert caught.value.argument == argument  # type: ignore[attr-defined]


def test_tables_from_diloco_compressors() -> None:
    torch = pytest.importorskip("torch")
    from thrifty.diloco.compressors import BlockQuantizer, TopK

    generator = torch.Generator().manual_seed(0)
    layers = [torch.randn(300, generator=generator), torch.randn(4, 25, generator=generator)]
    candidates = [TopK(0.1), TopK(0.5), BlockQuantizer("int8")]
    errors, sizes = schedule.lgreco_tables(layers, candidates)
    assert errors.shape == sizes.shape == (2, 3)
    for layer, tensor in enumerate(layers):
        flat = tensor.reshape(-1)
        for level, compressor in enumerate(candidates):
            expected = float(((compressor.compress(flat, seed=0) - flat) ** 2).sum())
            assert errors[layer, level] == pytest.approx(expected, rel=1e-6)
            assert sizes[layer, level] == compressor.payload_bytes(flat.numel())
    # Keeping more coordinates loses less and costs more.
    assert np.all(errors[:, 0] > errors[:, 1])
    assert np.all(sizes[:, 0] < sizes[:, 1])
    levels = schedule.lgreco(errors, sizes, float(errors[:, 1].sum()))
    assert errors[np.arange(2), levels].sum() <= errors[:, 1].sum()


def test_tables_equal_lgreco_measure_for_the_same_seed() -> None:
    # One error table: the schedule's tables and the compressor's own measurement seed each
    # layer alike, so seeded candidates (random-k) give the same errors in both.
    torch = pytest.importorskip("torch")
    from thrifty.diloco.compressors import BlockQuantizer, LGreCo, RandomK, TopK

    generator = torch.Generator().manual_seed(1)
    layers = [torch.randn(40, generator=generator), torch.randn(40, generator=generator)]
    candidates = [RandomK(0.25), TopK(0.25), BlockQuantizer("fp4", block=8)]
    compressor = LGreCo(candidates, default=2, layers=[t.numel() for t in layers])
    flat = torch.cat(layers)
    for seed in (0, 7, 2**64 - 1):
        errors, sizes = schedule.lgreco_tables(layers, candidates, seed=seed)
        measured = compressor.measure(flat, seed=seed)
        assert np.array_equal(errors, measured)
        assert np.array_equal(sizes, compressor.sizes())
    # random-k's error depends on the seed, so the agreement above is not vacuous
    first, _ = schedule.lgreco_tables(layers, candidates, seed=0)
    other, _ = schedule.lgreco_tables(layers, candidates, seed=7)
    assert not np.array_equal(first[:, 0], other[:, 0])


def test_tables_refuse_a_negative_seed() -> None:
    torch = pytest.importorskip("torch")
    from thrifty.diloco.compressors import RandomK

    with pytest.raises(InvalidArgumentError) as caught:
        schedule.lgreco_tables([torch.ones(4)], [RandomK(0.5)], seed=-1)
    assert caught.value.argument == "seed"


def test_tables_name_bad_input() -> None:
    torch = pytest.importorskip("torch")
    from thrifty.diloco.compressors import TopK

    with pytest.raises(InvalidArgumentError) as caught:
        schedule.lgreco_tables([torch.ones(4)], [])
    assert caught.value.argument == "candidates"
    with pytest.raises(NonFiniteError) as caught:
        schedule.lgreco_tables([torch.tensor([1.0, float("nan")])], [TopK(0.5)])
    assert caught.value.argument == "tensors"
    with pytest.raises(DTypeError) as caught:
        schedule.lgreco_tables([np.ones(4)], [TopK(0.5)])  # type: ignore[list-item]
    assert caught.value.argument == "tensors"


@pytest.mark.timeout(60)
def test_bucket_counts_past_exact_float_integers_end() -> None:
    # Past 2^53, adding 1 to a float count changed nothing and the rounding looped for ever;
    # now the count ends, and the table it asks for is refused by name.
    with pytest.raises(InvalidArgumentError) as raised:
        schedule.lgreco(np.array([[0.206, 0.0]]), np.array([[1.0, 2.0]]), 1.0, buckets=10**17)
    assert raised.value.argument == "budget"
