"""all_reduce against NumPy, exact and quantized, on real peer processes."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from collective_harness import World, run_peers
from numpy.lib.stride_tricks import sliding_window_view

NUMPY_DTYPES = ("float32", "float64", "float16", "int32", "int64")
OPS = ("sum", "avg", "max", "min")
SIZES: tuple[Any, ...] = (1, 7, 1000, 100_003, (33, 7))


def contribution(rank: int, dtype: str, size: Any, seed: int = 0) -> np.ndarray[Any, Any]:
    """Rank ``rank``'s input. Floats are small multiples of a power of two, so that every
    sum is exact in the element's precision whatever the order; integers span the whole
    range, so that sums wrap."""
    shape = size if isinstance(size, tuple) else (size,)
    count = int(np.prod(shape))
    rng = np.random.default_rng([seed, rank, count, NUMPY_DTYPES.index(dtype)])
    if dtype in ("int32", "int64"):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, count, dtype=dtype, endpoint=True)
    else:
        step, top = {"float16": (4, 64), "float32": (8, 8000), "float64": (8, 8000)}[dtype]
        values = (rng.integers(-top, top + 1, count) / step).astype(dtype)
        if rank == 0 and count >= 7:
            values[count // 2] = np.nan  # NaN propagates through every op, as in NumPy
    return values.reshape(shape)


def reference(inputs: list[np.ndarray[Any, Any]], op: str) -> np.ndarray[Any, Any]:
    """What NumPy computes: wrapping integer sums, floor-divided averages."""
    stack = np.stack(inputs)
    n = len(inputs)
    dtype = stack.dtype
    if op == "max":
        return np.maximum.reduce(stack, axis=0)
    if op == "min":
        return np.minimum.reduce(stack, axis=0)
    total = np.add.reduce(stack, axis=0, dtype=dtype)
    if op == "sum":
        return total
    if dtype.kind == "i":
        return np.floor_divide(total, dtype.type(n))
    return (total / dtype.type(n)).astype(dtype)


def digest(x: np.ndarray[Any, Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def _first_difference(x: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> str:
    flat_x, flat_e = x.reshape(-1), expected.reshape(-1)
    same = (flat_x == flat_e) | (np.isnan(flat_x) & np.isnan(flat_e))
    i = int(np.argmin(same))
    return f"index {i}: got {flat_x[i]!r}, expected {flat_e[i]!r}"


def _exact_peer(comm: Any) -> tuple[list[str], dict[str, str]]:
    n, rank = comm.world_size, comm.rank
    failures: list[str] = []
    digests: dict[str, str] = {}
    for dtype in NUMPY_DTYPES:
        for size in SIZES:
            inputs = [contribution(r, dtype, size) for r in range(n)]
            for op in OPS:
                x = inputs[rank].copy()
                comm.all_reduce(x, op=op)
                expected = reference(inputs, op)
                key = f"{dtype} {size} {op}"
                if x.dtype != expected.dtype or not np.array_equal(x, expected, equal_nan=True):
                    failures.append(f"{key}: {_first_difference(x, expected)}")
                digests[key] = digest(x)
    return failures, digests


@pytest.mark.timeout(180)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_exact_all_reduce_equals_numpy_on_every_rank(n: int) -> None:
    results = run_peers(n, _exact_peer)
    for rank, (failures, _) in enumerate(results):
        assert failures == [], f"rank {rank}"
    for _, digests in results[1:]:
        assert digests == results[0][1], "ranks are not bit-identical"


# Quantization --------------------------------------------------------------------------

# The constants of the documented bound (see rust/thrifty-collective/src/block_quant.rs):
# |decode(encode(x)) - x| <= max(rel |x|, abs * scale) (1 + 2^-12) + 2^-138,
# where scale = absmax / max_code.
QUANT = {"int8": (0.0, 0.5, 127.0), "fp8": (1 / 16, 1 / 1024, 448.0), "fp4": (0.25, 0.25, 6.0)}


def _window_absmax(v: np.ndarray[Any, Any], block: int) -> np.ndarray[Any, Any]:
    """The largest |v| within ``block - 1`` of each element: at least the absmax of whichever
    block of ``block`` values holds it, wherever the slices put the block boundaries."""
    padded = np.pad(np.abs(v), block - 1)
    return np.asarray(sliding_window_view(padded, 2 * block - 1).max(axis=1))


def quant_bound(v: np.ndarray[Any, Any], fmt: str, block: int) -> np.ndarray[Any, Any]:
    rel, absolute, max_code = QUANT[fmt]
    scale = _window_absmax(v, block) / max_code
    return np.maximum(rel * np.abs(v), absolute * scale) * (1 + 2.0**-12) + 2.0**-138


def quantized_bound(
    inputs: list[np.ndarray[Any, Any]], op: str, fmt: str, block: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(exact result in float64, bound on |result - exact|): every peer's input error, the
    fp32 accumulation, then one output quantization."""
    n = len(inputs)
    wide = [x.astype(np.float64) for x in inputs]
    exact = np.sum(wide, axis=0)
    error = sum(quant_bound(x, fmt, block) for x in wide)
    error = error + n * 2.0**-23 * np.sum(np.abs(wide), axis=0)
    if op == "avg":
        exact, error = exact / n, error / n + 2.0**-23 * np.abs(exact / n)
    reduced = np.abs(exact) + error
    return exact, error + quant_bound(reduced, fmt, block) + 2.0**-23 * reduced


def _gaussian(rank: int, size: int, dtype: str) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng([7, rank, size])
    x = rng.standard_normal(size) * np.exp(rng.uniform(-3, 3, size))  # varied magnitudes
    return x.astype(dtype)


def _quantized_peer(comm: Any, size: int) -> tuple[list[str], dict[str, str], dict[str, int]]:
    n, rank = comm.world_size, comm.rank
    failures: list[str] = []
    digests: dict[str, str] = {}
    sent: dict[str, int] = {}
    for dtype in ("float32", "float64"):
        inputs = [_gaussian(r, size, dtype) for r in range(n)]
        x = inputs[rank].copy()
        comm.all_reduce(x)
        sent[f"{dtype} exact"] = comm.last_stats.bytes_sent
        for fmt in QUANT:
            for op, block in (("sum", 64), ("avg", 64), ("sum", 7)):
                x = inputs[rank].copy()
                comm.all_reduce(x, op=op, quantize=fmt, block=block)
                key = f"{dtype} {fmt} {op} block {block}"
                sent[key] = comm.last_stats.bytes_sent
                digests[key] = digest(x)
                exact, bound = quantized_bound(inputs, op, fmt, block)
                error = np.abs(x.astype(np.float64) - exact)
                if not np.all(error <= bound):
                    i = int(np.argmax(error - bound))
                    failures.append(
                        f"{key}: index {i}: error {error[i]:.3g} > bound {bound[i]:.3g}"
                    )
    return failures, digests, sent


@pytest.mark.timeout(180)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_quantized_all_reduce_within_the_documented_bound_and_bit_identical(n: int) -> None:
    results = run_peers(n, _quantized_peer, 10_007)
    for rank, (failures, _, _) in enumerate(results):
        assert failures == [], f"rank {rank}"
    for _, digests, _ in results[1:]:
        assert digests == results[0][1], "ranks are not bit-identical"
    sent = results[0][2]
    # Fewer bytes on the wire: int8 carries a quarter of float32's payload, plus the scales.
    assert sent["float32 int8 sum block 64"] < 0.4 * sent["float32 exact"]
    assert sent["float32 fp4 sum block 64"] < sent["float32 fp8 sum block 64"]


def test_quantized_bound_helper_is_not_vacuous() -> None:
    """The bound used above is tight enough to catch a real error: for int8 it stays within
    a few per cent of the largest magnitude, so an error of 10% of it fails."""
    inputs = [_gaussian(r, 1000, "float32") for r in range(3)]
    exact, bound = quantized_bound(inputs, "sum", "int8", 64)
    assert np.all(bound <= 0.05 * _window_absmax(exact, 64))
    assert not np.all(0.1 * _window_absmax(exact, 64) <= bound)


# Async ---------------------------------------------------------------------------------


def _async_peer(comm: Any, events: Any) -> list[str]:
    n, rank = comm.world_size, comm.rank
    failures: list[str] = []
    inputs = [contribution(r, "float32", 50_000) for r in range(n)]
    x = inputs[rank].copy()
    if rank == 0:
        handle = comm.all_reduce_async(x, op="sum")
        # The others start their all_reduce only once told to: the call has returned, and
        # the collective cannot have finished.
        if handle.done():
            failures.append("done() before the other peers joined")
        busy = sum(i * i for i in range(100_000))  # Python work while the collective waits
        for _ in range(n - 1):
            events.put(("go", busy))
        stats = handle.wait()
        if not handle.done() or (n > 1 and stats.bytes_sent <= 0):
            failures.append(f"after wait: done={handle.done()} stats={stats}")
        if handle.wait() != stats:
            failures.append("a second wait() differs")
    else:
        events.get(timeout=30)
        comm.all_reduce(x, op="sum")
    if not np.array_equal(x, reference(inputs, "sum"), equal_nan=True):
        failures.append(f"first: {_first_difference(x, reference(inputs, 'sum'))}")
    # Several in flight at once, then a synchronous call, which runs after all of them.
    arrays = {op: inputs[rank].copy() for op in OPS}
    handles = {op: comm.all_reduce_async(arrays[op], op=op) for op in OPS}
    y = inputs[rank].copy()
    comm.all_reduce(y, op="max")
    if not all(h.done() for h in handles.values()):
        failures.append("a synchronous call returned before the earlier async ones finished")
    for op in reversed(OPS):
        handles[op].wait()
        if not np.array_equal(arrays[op], reference(inputs, op), equal_nan=True):
            failures.append(f"{op}: {_first_difference(arrays[op], reference(inputs, op))}")
    return failures


@pytest.mark.timeout(120)
def test_async_all_reduce_overlaps_with_python_work() -> None:
    with World() as world:
        for _ in range(3):
            world.spawn(_async_peer, world.events, world=3)
        results = world.results(3)
    assert [r.value for r in results] == [[], [], []]
