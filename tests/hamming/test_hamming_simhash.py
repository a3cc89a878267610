"""SimHash codes and near-duplicate groups, against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import thrifty
from thrifty import hamming
from thrifty.hamming._dedup import components
from thrifty.hamming._simhash import hyperplanes


def reference_simhash(x: np.ndarray, bits: int, seed: int) -> np.ndarray:
    planes = np.random.default_rng(seed).standard_normal((x.shape[1], bits))
    return np.packbits((x.astype(np.float64) @ planes > 0).astype(np.uint8), axis=1)


@pytest.mark.parametrize("bits", [1, 8, 13, 64, 256])
def test_simhash_equals_the_reference(bits: int) -> None:
    x = np.random.default_rng(0).standard_normal((40, 24))
    codes = hamming.simhash(x, bits, seed=3)
    assert codes.dtype == np.uint8
    assert codes.shape == (40, -(-bits // 8))
    np.testing.assert_array_equal(codes, reference_simhash(x, bits, 3))


def test_simhash_is_deterministic_in_its_seed_and_input_type() -> None:
    x = np.random.default_rng(1).standard_normal((10, 32)).astype(np.float32)
    one = hamming.simhash(x, 64, seed=9)
    np.testing.assert_array_equal(one, hamming.simhash(x.copy(), 64, seed=9))
    assert not np.array_equal(one, hamming.simhash(x, 64, seed=10))
    np.testing.assert_array_equal(hamming.simhash(x, 64), hamming.simhash(x, 64, seed=0))
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(hamming.simhash(torch.from_numpy(x), 64, seed=9), one)


def test_the_hyperplanes_are_pinned() -> None:
    # The same seed must give the same codes on every platform and NumPy version that keeps
    # PCG64 and its normal sampler; this pins a few values.
    planes = hyperplanes(2, 2, 0)
    np.testing.assert_allclose(planes.ravel(), [0.12573022, -0.13210486, 0.64042265, 0.10490012])


def test_the_distance_tracks_the_angle() -> None:
    rng = np.random.default_rng(2)
    base = rng.standard_normal(64)
    other = rng.standard_normal(64)
    other -= other @ base / (base @ base) * base  # orthogonal to base
    angles = np.linspace(0.0, np.pi, 7)
    rows = [
        np.cos(a) * base / np.linalg.norm(base) + np.sin(a) * other / np.linalg.norm(other)
        for a in angles
    ]
    bits = 4096
    codes = hamming.simhash(np.array(rows), bits, seed=5)
    d = hamming.cdist(codes[:1], codes)[0] / bits
    # Each bit differs with probability theta / pi; 4096 bits give a standard error < 0.008.
    np.testing.assert_allclose(d, angles / np.pi, atol=0.04)


@pytest.mark.parametrize(
    ("call", "argument", "error"),
    [
        (lambda: hamming.simhash(np.zeros((2, 3)), 0), "bits", thrifty.InvalidArgumentError),
        (
            lambda: hamming.simhash(np.zeros((2, 3)), 8, seed=-1),
            "seed",
            thrifty.InvalidArgumentError,
        ),
        (lambda: hamming.simhash(np.zeros(3), 8), "embeddings", thrifty.ShapeError),
        (lambda: hamming.simhash(np.zeros((2, 3), int), 8), "embeddings", thrifty.DTypeError),
        (
            lambda: hamming.simhash(np.array([[np.nan, 1.0]]), 8),
            "embeddings",
            thrifty.NonFiniteError,
        ),
    ],
)
def test_simhash_bad_inputs_name_the_argument(
    call: object, argument: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        call()  # type: ignore[operator]
    assert caught.value.argument == argument  # type: ignore[attr-defined]


def reference_components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    seen = [False] * n
    groups = []
    for start in range(n):
        if seen[start]:
            continue
        seen[start] = True
        stack, group = [start], []
        while stack:
            node = stack.pop()
            group.append(node)
            for other in neighbours[node]:
                if not seen[other]:
                    seen[other] = True
                    stack.append(other)
        if len(group) > 1:
            groups.append(sorted(group))
    return groups


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 60),
    data=st.data(),
)
def test_components_equal_a_graph_search(n: int, data: st.DataObject) -> None:
    edges = (
        data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=80))
        if n
        else []
    )
    first = np.array([a for a, _ in edges], dtype=np.int64)
    second = np.array([b for _, b in edges], dtype=np.int64)
    assert components(n, first, second) == reference_components(n, edges)


def test_components_of_a_long_chain() -> None:
    n = 2000
    order = np.random.default_rng(0).permutation(n)
    assert components(n, order[:-1], order[1:]) == [list(range(n))]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.integers(0, 6))
def test_near_duplicates_equal_the_reference(seed: int, r: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (8, 4), dtype=np.uint8)
    codes = base[rng.integers(0, 8, 50)]
    flips = rng.integers(0, 32, 50)
    codes[np.arange(50), flips // 8] ^= (1 << (flips % 8)).astype(np.uint8)
    d = hamming.cdist(codes, codes)
    edges = [(i, j) for i in range(50) for j in range(i + 1, 50) if d[i, j] <= r]
    assert hamming.near_duplicates(codes, r) == reference_components(50, edges)


def test_near_duplicates_of_exact_copies_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from thrifty.hamming import _dedup as dedup

    monkeypatch.setattr(dedup, "_CHUNK", 3)
    codes = np.array([[1], [2], [1], [3], [2], [1], [200]], np.uint8)
    assert hamming.near_duplicates(codes, 0) == [[0, 2, 5], [1, 4]]
    assert hamming.near_duplicates(codes, 1) == [[0, 1, 2, 3, 4, 5]]
    assert hamming.near_duplicates(np.zeros((0, 4), np.uint8), 3) == []


def test_near_duplicates_bad_inputs() -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        hamming.near_duplicates(np.zeros((2, 2), np.uint8), -1)
    assert caught.value.argument == "radius"
    with pytest.raises(thrifty.DTypeError) as dtype:
        hamming.near_duplicates(np.zeros((2, 2), np.int32), 1)
    assert dtype.value.argument == "codes"


def test_dedup_of_simhashed_embeddings() -> None:
    rng = np.random.default_rng(4)
    originals = rng.standard_normal((20, 32))
    copies = originals[[3, 3, 11]] + 1e-4 * rng.standard_normal((3, 32))
    codes = hamming.simhash(np.concatenate([originals, copies]), 128, seed=0)
    assert hamming.near_duplicates(codes, 4) == [[3, 20, 21], [11, 22]]
