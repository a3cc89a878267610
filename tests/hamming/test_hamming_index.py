"""BinaryIndex: stable ids through adds and removals, search against brute force, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import thrifty
from thrifty import hamming

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


def brute_force(
    q: np.ndarray, codes: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    d = POPCOUNT[q[:, None, :] ^ codes[None, :, :]].sum(axis=2, dtype=np.int32)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), ids[order]


def random_codes(rng: np.random.Generator, n: int, width: int = 4) -> np.ndarray:
    # Few distinct codes, so that ties are common.
    palette = rng.integers(0, 256, (6, width), dtype=np.uint8)
    return palette[rng.integers(0, 6, n)]


def test_ids_survive_adds_and_removals() -> None:
    rng = np.random.default_rng(0)
    live_codes = random_codes(rng, 50)
    index = hamming.BinaryIndex(live_codes)
    live_ids = np.arange(50)
    for step in range(6):
        new = random_codes(rng, 20)
        added = index.add(new)
        assert added.tolist() == list(range(50 + 20 * step, 50 + 20 * (step + 1)))
        live_codes = np.concatenate([live_codes, new])
        live_ids = np.concatenate([live_ids, added])
        gone = rng.choice(live_ids, 15, replace=False)
        index.remove(gone)
        keep = ~np.isin(live_ids, gone)
        live_codes, live_ids = live_codes[keep], live_ids[keep]
        assert len(index) == len(live_ids)
        np.testing.assert_array_equal(index.ids, live_ids)
        np.testing.assert_array_equal(index.codes, live_codes)
        queries = random_codes(rng, 7)
        distances, ids = index.search(queries, 9)
        expected_d, expected_ids = brute_force(queries, live_codes, live_ids, 9)
        np.testing.assert_array_equal(distances, expected_d)
        np.testing.assert_array_equal(ids, expected_ids)


def test_removed_ids_are_never_reused() -> None:
    index = hamming.BinaryIndex(np.zeros((3, 2), np.uint8))
    index.remove([2])
    assert index.add(np.zeros((1, 2), np.uint8)).tolist() == [3]


def test_explicit_ids_and_bits() -> None:
    bits = np.array([[1, 0, 1], [0, 0, 0]], dtype=bool)
    index = hamming.BinaryIndex(bits, ids=[100, 7])
    assert index.bytes_per_code == 1
    np.testing.assert_array_equal(index.codes, hamming.pack(bits))
    assert index.add(np.array([[1, 1, 1]], bool)).tolist() == [101]
    assert index.add(np.zeros((1, 1), np.uint8), ids=[5]).tolist() == [5]
    distances, ids = index.search(np.array([[1, 0, 0]], bool), 4)
    assert distances.tolist() == [[1, 1, 1, 2]]
    assert ids.tolist() == [[100, 7, 5, 101]]


def test_search_with_fewer_codes_than_k_returns_them_all() -> None:
    index = hamming.BinaryIndex(np.array([[1], [3]], np.uint8))
    distances, ids = index.search(np.array([[0]], np.uint8), 5)
    assert distances.tolist() == [[1, 2]]
    assert ids.tolist() == [[0, 1]]
    index.remove([0, 1])
    distances, ids = index.search(np.array([[0], [1]], np.uint8), 5)
    assert distances.shape == ids.shape == (2, 0)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    index = hamming.BinaryIndex(random_codes(rng, 30, 8), ids=np.arange(30) * 3)
    index.remove([0, 3, 87])
    path = tmp_path / "codes.index"
    index.save(path)
    assert path.exists()
    loaded = hamming.BinaryIndex.load(path)
    np.testing.assert_array_equal(loaded.ids, index.ids)
    np.testing.assert_array_equal(loaded.codes, index.codes)
    assert loaded.add(np.zeros((1, 8), np.uint8)).tolist() == [88]
    queries = random_codes(rng, 4, 8)
    for a, b in zip(loaded.search(queries, 5), index.search(queries, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_torch_codes_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    index = hamming.BinaryIndex(torch.zeros((2, 4), dtype=torch.uint8))
    distances, ids = index.search(torch.full((1, 4), 1, dtype=torch.uint8), 1)
    assert distances.tolist() == [[4]]
    assert ids.tolist() == [[0]]


def test_stored_codes_are_a_private_copy() -> None:
    codes = np.zeros((2, 2), np.uint8)
    index = hamming.BinaryIndex(codes)
    codes[0] = 255
    assert int(index.codes.sum()) == 0
    with pytest.raises(ValueError, match="read-only"):
        index.codes[0, 0] = 1


def test_bad_calls_name_the_argument(tmp_path: Path) -> None:
    index = hamming.BinaryIndex(np.zeros((3, 4), np.uint8))
    with pytest.raises(thrifty.ShapeError, match="codes must hold codes of 4 bytes") as e1:
        index.add(np.zeros((1, 8), np.uint8))
    assert e1.value.argument == "codes"
    with pytest.raises(thrifty.ShapeError) as e2:
        index.search(np.zeros((1, 2), np.uint8), 1)
    assert e2.value.argument == "queries"
    with pytest.raises(thrifty.InvalidArgumentError, match="already in the index") as e3:
        index.add(np.zeros((1, 4), np.uint8), ids=[1])
    assert e3.value.argument == "ids"
    with pytest.raises(thrifty.InvalidArgumentError, match="unique"):
        index.add(np.zeros((2, 4), np.uint8), ids=[9, 9])
    with pytest.raises(thrifty.ShapeError, match="one per code"):
        index.add(np.zeros((2, 4), np.uint8), ids=[9])
    with pytest.raises(thrifty.InvalidArgumentError, match=r"not in the index: \[42\]") as e4:
        index.remove([1, 42])
    assert e4.value.argument == "ids"
    assert len(index) == 3  # nothing was removed
    with pytest.raises(thrifty.InvalidArgumentError) as e5:
        index.search(np.zeros((1, 4), np.uint8), 0)
    assert e5.value.argument == "k"
    with pytest.raises(thrifty.DTypeError) as e6:
        hamming.BinaryIndex(np.zeros((2, 4), np.float32))
    assert e6.value.argument == "codes"
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(2))
    with pytest.raises(thrifty.InvalidArgumentError, match="not a BinaryIndex file"):
        hamming.BinaryIndex.load(other)
