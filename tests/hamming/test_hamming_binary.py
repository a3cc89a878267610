"""Packed binary codes: pack, cdist, topk and radius against brute-force NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import thrifty
from thrifty import hamming
from thrifty.hamming._inputs import codes as as_codes

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


def reference_cdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=2, dtype=np.int32)


def reference_topk(q: np.ndarray, db: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = reference_cdist(q, db)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]  # stable: ties by index
    return np.take_along_axis(d, order, axis=1), order.astype(np.int64)


@st.composite
def code_sets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Query and database codes; few distinct bit patterns make many ties."""
    width = draw(st.sampled_from([1, 3, 8, 13, 32, 65]))
    nq = draw(st.integers(0, 12))
    nb = draw(st.integers(0, 80))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        palette = rng.integers(0, 256, (draw(st.integers(1, 4)), width), dtype=np.uint8)
        q = palette[rng.integers(0, len(palette), nq)]
        db = palette[rng.integers(0, len(palette), nb)]
    else:
        q = rng.integers(0, 256, (nq, width), dtype=np.uint8)
        db = rng.integers(0, 256, (nb, width), dtype=np.uint8)
    return np.ascontiguousarray(q), np.ascontiguousarray(db)


@settings(max_examples=80, deadline=None)
@given(rows=st.integers(0, 20), dims=st.integers(1, 100), seed=st.integers(0, 1000))
def test_pack_equals_numpy_packbits(rows: int, dims: int, seed: int) -> None:
    bits = np.random.default_rng(seed).integers(0, 2, (rows, dims))
    expected = np.packbits(bits.astype(np.uint8), axis=1)
    for x in (bits, bits.astype(bool), bits.astype(np.uint8), bits * 7):
        got = hamming.pack(x)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected)


@settings(max_examples=80, deadline=None)
@given(case=code_sets())
def test_cdist_equals_the_reference(case: tuple[np.ndarray, np.ndarray]) -> None:
    q, db = case
    got = hamming.cdist(q, db)
    assert got.dtype == np.int32
    assert got.shape == (len(q), len(db))
    np.testing.assert_array_equal(got, reference_cdist(q, db))


@settings(max_examples=120, deadline=None)
@given(case=code_sets(), k=st.integers(1, 100))
def test_topk_equals_the_reference_ties_by_index(
    case: tuple[np.ndarray, np.ndarray], k: int
) -> None:
    q, db = case
    distances, indices = hamming.topk(q, db, k)
    expected_d, expected_i = reference_topk(q, db, k)
    assert distances.dtype == np.int32
    assert indices.dtype == np.int64
    assert distances.shape == indices.shape == (len(q), min(k, len(db)))
    np.testing.assert_array_equal(distances, expected_d)
    np.testing.assert_array_equal(indices, expected_i)


@settings(max_examples=80, deadline=None)
@given(case=code_sets(), r=st.integers(0, 40))
def test_radius_equals_the_reference(case: tuple[np.ndarray, np.ndarray], r: int) -> None:
    q, db = case
    d = reference_cdist(q, db)
    hits = hamming.radius(q, db, r)
    assert len(hits) == len(q)
    for row, (indices, distances) in zip(d, hits, strict=True):
        within = np.flatnonzero(row <= r)
        order = np.lexsort((within, row[within]))
        np.testing.assert_array_equal(indices, within[order])
        np.testing.assert_array_equal(distances, row[within][order])
    offsets, indices, distances = hamming.radius_csr(q, db, r)
    assert offsets.tolist() == [0, *np.cumsum((d <= r).sum(axis=1)).tolist()]
    assert indices.dtype == np.int64
    assert distances.dtype == np.int32


def test_k_beyond_any_integer_type_keeps_every_code() -> None:
    db = np.array([[3], [1]], np.uint8)
    distances, indices = hamming.topk(np.zeros((1, 1), np.uint8), db, 2**80)
    assert distances.tolist() == [[1, 2]]
    assert indices.tolist() == [[1, 0]]
    distances, _ = hamming.topk(np.zeros((2, 1), np.uint8), np.zeros((0, 1), np.uint8), 3)
    assert distances.shape == (2, 0)


def test_a_popcount_kernel_is_named() -> None:
    assert hamming.popcount_kernel() in {"avx512-vpopcntdq", "avx2", "neon", "scalar"}


def test_torch_codes_are_used_without_copying() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.randint(0, 256, (5, 8), dtype=torch.uint8)
    assert np.shares_memory(as_codes(tensor, "a"), tensor.numpy())
    np.testing.assert_array_equal(
        hamming.cdist(tensor, tensor), reference_cdist(tensor.numpy(), tensor.numpy())
    )
    distances, _ = hamming.topk(tensor, tensor, 2)
    assert (distances[:, 0] == 0).all()


def test_numpy_codes_are_used_without_copying() -> None:
    a = np.zeros((3, 4), np.uint8)
    assert np.shares_memory(as_codes(a, "a"), a)


@pytest.mark.parametrize(
    ("call", "argument", "error", "match"),
    [
        (
            lambda: hamming.cdist(np.zeros((2, 8), np.uint8), np.zeros((2, 4), np.uint8)),
            "b",
            thrifty.ShapeError,
            "b must hold codes of 8 bytes like a, got 4",
        ),
        (
            lambda: hamming.topk(np.zeros((2, 8), np.uint8), np.zeros((2, 16), np.uint8), 1),
            "db",
            thrifty.ShapeError,
            "db must hold codes of 8 bytes",
        ),
        (
            lambda: hamming.radius(np.zeros((2, 3), np.uint8), np.zeros((2, 2), np.uint8), 1),
            "db",
            thrifty.ShapeError,
            "db must hold codes",
        ),
        (
            lambda: hamming.cdist(np.zeros((2, 8), np.int64), np.zeros((2, 8), np.uint8)),
            "a",
            thrifty.DTypeError,
            "a must be packed codes of dtype uint8",
        ),
        (
            lambda: hamming.cdist(np.zeros((2, 8), np.uint8), np.zeros((2, 8), bool)),
            "b",
            thrifty.DTypeError,
            "hamming.pack",
        ),
        (
            lambda: hamming.topk(np.zeros(8, np.uint8), np.zeros((2, 8), np.uint8), 1),
            "queries",
            thrifty.ShapeError,
            "queries must be 2-D",
        ),
        (
            lambda: hamming.cdist(np.zeros((2, 0), np.uint8), np.zeros((2, 0), np.uint8)),
            "a",
            thrifty.ShapeError,
            "at least one byte",
        ),
        (
            lambda: hamming.topk(np.zeros((2, 8), np.uint8), np.zeros((2, 8), np.uint8), 0),
            "k",
            thrifty.InvalidArgumentError,
            "k must be an integer >= 1",
        ),
        (
            lambda: hamming.radius(np.zeros((2, 8), np.uint8), np.zeros((2, 8), np.uint8), -1),
            "r",
            thrifty.InvalidArgumentError,
            "r must be an integer >= 0",
        ),
        (
            lambda: hamming.pack(np.zeros(8, np.uint8)),
            "bits",
            thrifty.ShapeError,
            "bits must be 2-D",
        ),
        (
            lambda: hamming.pack(np.zeros((2, 8), np.float32)),
            "bits",
            thrifty.DTypeError,
            "bits must have a",
        ),
        (
            lambda: hamming.cdist([[1, 2]], np.zeros((2, 2), np.uint8)),
            "a",
            thrifty.DTypeError,
            "a must have a unsigned integer dtype",
        ),
    ],
)
def test_bad_inputs_name_the_argument(
    call: object, argument: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        call()  # type: ignore[operator]
    assert caught.value.argument == argument  # type: ignore[attr-defined]


def test_strided_codes_are_copied_not_refused() -> None:
    a = np.random.default_rng(0).integers(0, 256, (6, 16), dtype=np.uint8)
    view = a[::2, ::2]
    np.testing.assert_array_equal(hamming.cdist(view, view), reference_cdist(view, view))


def test_the_binding_refuses_strided_arrays_naming_them() -> None:
    from thrifty import _native

    a = np.zeros((4, 8), np.uint8)
    with pytest.raises(thrifty.DTypeError, match="C-contiguous") as caught:
        _native.hamming_cdist(a, a[:, ::2])
    assert caught.value.argument == "b"


@pytest.mark.parametrize("width", [4095, 4097, 9000])
def test_wide_codes_equal_the_reference(width: int) -> None:
    rng = np.random.default_rng(width)
    db = rng.integers(0, 256, (20, width), dtype=np.uint8)
    db[5] = db[2]  # a tie
    q = np.ascontiguousarray(db[[2, 7, 11]] ^ rng.integers(0, 2, (3, width), dtype=np.uint8))
    np.testing.assert_array_equal(hamming.cdist(q, db), reference_cdist(q, db))
    for got, expected in zip(hamming.topk(q, db, 6), reference_topk(q, db, 6), strict=True):
        np.testing.assert_array_equal(got, expected)
    d = reference_cdist(q, db)
    r = int(np.sort(d, axis=1)[:, 1].max())
    for row, (indices, _) in zip(d, hamming.radius(q, db, r), strict=True):
        assert sorted(indices.tolist()) == np.flatnonzero(row <= r).tolist()


def test_results_too_large_to_hold_are_errors_not_aborts() -> None:
    # 2^24 x 2^24 distances: a failed allocation would abort the interpreter.
    codes = np.zeros((2**24, 1), dtype=np.uint8)
    with pytest.raises(thrifty.InvalidArgumentError) as raised:
        hamming.cdist(codes, codes)
    assert raised.value.argument == "b"
    with pytest.raises(thrifty.InvalidArgumentError) as raised:
        hamming.topk(codes, codes, 2**24)
    assert raised.value.argument == "k"
