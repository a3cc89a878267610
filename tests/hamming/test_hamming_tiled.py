"""The query-tiled top-k of ``cuda/hamming.cu`` re-done step by step in NumPy, against the CPU.

``hamming_topk_tiled_w<W>`` and ``hamming_topk_merge`` cannot run without a GPU, so this twin
repeats their algorithm on the host: the same slices (from ``_gpu.tiled_plan``), tiles, steps
of 32 lanes, 32-bit keys, sentinels, candidate buffers that merge into the list by ranks when a
ballot would overflow them, and the cross-slice merge by ranks. Each rank merge also asserts
what the kernels take for granted: the ranks are a permutation, so every output slot is
written once. Agreement with ``_native.hamming_topk`` on tie-heavy inputs, k past the
database, databases that are not whole tiles and every code width of 1..8 words is what
shows the tiling and the merges are exact. ``test_hamming_gpu.py`` runs the kernels
themselves against the CPU where a GPU is present; without one, the slow test at the end
runs the kernel source itself on the host (``simt/``) and checks its per-slice lists against
this twin's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty import hamming
from thrifty.hamming import _gpu

CUDA_SOURCE = Path(__file__).resolve().parents[2] / "cuda" / "hamming.cu"

NO_KEY = 0xFFFFFFFF
LOCAL_MASK = (1 << _gpu.TILED_INDEX_BITS) - 1
LARGEST_KEY = ((_gpu.TILED_MAX_WORDS * 64) << _gpu.TILED_INDEX_BITS) | LOCAL_MASK
LANES = 32

U32 = np.ndarray[Any, np.dtype[np.uint32]]
U64 = np.ndarray[Any, np.dtype[np.uint64]]


def merge_buffer(keys: U32, buffer: list[int]) -> U32:
    """merge_buffer: the k smallest of list and buffer, placed by their ranks in the union."""
    k = len(keys)
    pending = np.array(buffer, dtype=np.uint32)
    union = np.concatenate([keys, pending])
    # Rank = keys below it in the list (its position, or a binary search) + in the buffer.
    in_list = np.concatenate([np.arange(k), np.searchsorted(keys, pending, side="left")])
    ranks = in_list + (pending[None, :] < union[:, None]).sum(axis=1)
    assert sorted(ranks.tolist()) == list(range(len(union))), "keys must be distinct"
    merged = np.empty(k, dtype=np.uint32)
    merged[ranks[ranks < k]] = union[ranks < k]
    return merged


def slice_list(distances: np.ndarray, slice_count: int, k: int) -> U32:
    """One query's list over one slice: what a warp of hamming_topk_tiled writes to partial.

    ``distances`` are the query's distances to the slice's codes, in slice order.
    """
    keys = (NO_KEY - (k - 1) + np.arange(k)).astype(np.uint32)  # sentinels, ascending
    threshold = NO_KEY
    buffer: list[int] = []
    lane = np.arange(LANES, dtype=np.uint64)
    for tile_start in range(0, slice_count, _gpu.TILED_CODES):
        for step in range(0, _gpu.TILED_CODES, LANES * _gpu.TILED_LANE_CODES):
            for r in range(_gpu.TILED_LANE_CODES):
                local = tile_start + step + LANES * r + lane
                valid = local < slice_count
                d = distances[np.minimum(local, slice_count - 1).astype(np.intp)]
                key = np.where(valid, (d << np.uint64(_gpu.TILED_INDEX_BITS)) | local, NO_KEY)
                assert (key <= NO_KEY).all()  # a key is 32 bits
                wanted = key < threshold
                if not wanted.any():
                    continue
                if len(buffer) + int(wanted.sum()) > _gpu.TILED_BUFFER:
                    keys = merge_buffer(keys, buffer)
                    threshold = int(keys[-1])
                    buffer = []
                    wanted = key < threshold
                buffer.extend(int(x) for x in key[wanted])  # ballot order: lane order
    if buffer:
        keys = merge_buffer(keys, buffer)
    return keys


def merge_slices(partial: U32, slice_codes: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """hamming_topk_merge for one query: ``partial`` holds one sorted list of k keys a slice."""
    slices = len(partial)
    flat = partial.reshape(-1).astype(np.uint64)
    e = np.arange(slices * k, dtype=np.uint64)
    slice_of = e // np.uint64(k)
    real = (flat >> np.uint64(_gpu.TILED_INDEX_BITS)) << np.uint64(32) | (
        slice_of * np.uint64(slice_codes) + (flat & np.uint64(LOCAL_MASK))
    )
    sentinel = np.uint64(0xFFFFFFFF << 32) | e
    wide: U64 = np.where(flat > LARGEST_KEY, sentinel, real).astype(np.uint64)
    lists = wide.reshape(slices, k)
    assert (lists[:, 1:] > lists[:, :-1]).all(), "each list sorted, distinct"
    # The rank of a key: its position in its own list plus the keys below it in the others.
    ranks = np.tile(np.arange(k), slices)
    for s in range(slices):
        below = np.searchsorted(lists[s], wide, side="left")
        ranks += np.where(slice_of == s, 0, below)
    kept = ranks < k
    assert sorted(ranks[kept].tolist()) == list(range(k)), "every output slot written once"
    out = np.empty(k, dtype=np.uint64)
    out[ranks[kept]] = wide[kept]
    return (out >> np.uint64(32)).astype(np.int32), (out & np.uint64(0xFFFFFFFF)).astype(np.int64)


def twin_topk(
    q: np.ndarray, db: np.ndarray, k: int, plan: _gpu.TiledPlan
) -> tuple[np.ndarray, np.ndarray]:
    """The tiled top-k of ``_gpu.topk_gpu`` on the host: per-slice lists, then their merge."""
    nb = len(db)
    kept = min(k, nb)
    distances = np.unpackbits(q[:, None, :] ^ db[None, :, :], axis=2).sum(axis=2)
    out_d = np.empty((len(q), kept), dtype=np.int32)
    out_i = np.empty((len(q), kept), dtype=np.int64)
    for row, d in enumerate(distances.astype(np.uint64)):
        partial = np.stack(
            [
                slice_list(
                    d[s * plan.slice_codes :],
                    min(plan.slice_codes, nb - s * plan.slice_codes),
                    kept,
                )
                for s in range(plan.slices)
            ]
        )
        out_d[row], out_i[row] = merge_slices(partial, plan.slice_codes, kept)
    return out_d, out_i


def random_codes(seed: int, n: int, width: int, distinct: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if distinct is None:
        return rng.integers(0, 256, (n, width), dtype=np.uint8)
    palette = rng.integers(0, 256, (distinct, width), dtype=np.uint8)
    return palette[rng.integers(0, distinct, n)]


def auto_plan(nq: int, nb: int, width: int, k: int, multiprocessors: int) -> _gpu.TiledPlan:
    plan = _gpu.tiled_plan(nq, nb, -(-width // 8), min(k, nb), multiprocessors)
    assert plan is not None
    return plan


# (bytes per code, queries, codes, distinct codes or None, k). Widths give 1..8 words, some
# padded; databases are not whole tiles; few distinct codes make ties straddle the k-th slot.
CASES = [
    (1, 5, 700, None, 10),
    (9, 3, 1000, 3, 10),
    (24, 4, 777, None, 128),
    (32, 6, 1500, 2, 1),
    (40, 2, 100, None, 500),  # k past the database: everything, in order
    (48, 3, 1000, 4, 64),
    (56, 2, 513, None, 33),
    (64, 3, 900, 3, 100),
    (13, 2, 10, None, 10),  # a database smaller than one step
    (13, 3, 20, 2, 50),
]


@pytest.mark.parametrize(("width", "nq", "nb", "distinct", "k"), CASES)
@pytest.mark.parametrize("slice_codes", [None, 256, 512])
def test_twin_equals_cpu(
    width: int, nq: int, nb: int, distinct: int | None, k: int, slice_codes: int | None
) -> None:
    q = random_codes(width, nq, width, distinct)
    db = random_codes(width + 1, nb, width, distinct)
    if slice_codes is None:  # one slice per ~2048 codes, as many as a big GPU would take
        plan = auto_plan(nq, nb, width, k, 132)
    else:  # slices of one or two tiles: the most merging
        plan = _gpu.TiledPlan(-(-nb // slice_codes), slice_codes)
    got_d, got_i = twin_topk(q, db, k, plan)
    want_d, want_i = hamming.topk(q, db, k)
    np.testing.assert_array_equal(got_d, want_d)
    np.testing.assert_array_equal(got_i, want_i)


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 64),
    nq=st.integers(1, 4),
    nb=st.integers(1, 900),
    distinct=st.sampled_from([None, 1, 2, 5]),
    k=st.integers(1, 140),
    tiles=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_twin_equals_cpu_on_drawn_inputs(
    width: int, nq: int, nb: int, distinct: int | None, k: int, tiles: int, seed: int
) -> None:
    q = random_codes(seed, nq, width, distinct)
    db = random_codes(seed, nb + nq, width, distinct)[nq:]
    kept = min(k, nb)
    if tiles == 0:
        plan = _gpu.tiled_plan(nq, nb, -(-width // 8), kept, 132)
    else:
        slice_codes = tiles * _gpu.TILED_CODES
        plan = _gpu.TiledPlan(-(-nb // slice_codes), slice_codes)
    if plan is None:  # k past TILED_MAX_K: the per-query kernel's case
        assert kept > _gpu.TILED_MAX_K
        return
    got_d, got_i = twin_topk(q, db, k, plan)
    want_d, want_i = hamming.topk(q, db, k)
    np.testing.assert_array_equal(got_d, want_d)
    np.testing.assert_array_equal(got_i, want_i)


def test_twin_at_the_largest_distance_and_all_ties() -> None:
    """512-bit codes at distance 512 use the key's top bit; identical codes tie everywhere."""
    rng = np.random.default_rng(7)
    code = rng.integers(0, 256, (1, 64), dtype=np.uint8)
    q = np.concatenate([code, ~code])
    db = np.repeat(~code, 600, axis=0)
    for k in (1, 50, 128):
        plan = _gpu.TiledPlan(3, 256)
        got_d, got_i = twin_topk(q, db, k, plan)
        want_d, want_i = hamming.topk(q, db, k)
        np.testing.assert_array_equal(got_d, want_d)
        np.testing.assert_array_equal(got_i, want_i)
        assert got_d.max() == 512


def test_plan_covers_the_database_within_the_kernels_limits() -> None:
    for nq, nb, k, sms in [
        (1024, 1_000_000, 10, 132),
        (1, 1_000_000, 128, 132),
        (100_000, 5_000, 1, 8),
        (3, 1, 1, 132),
        (7, 40_000_000, 100, 132),
    ]:
        plan = auto_plan(nq, nb, 32, k, sms)
        assert (plan.slices - 1) * plan.slice_codes < nb <= plan.slices * plan.slice_codes
        assert plan.slice_codes % _gpu.TILED_CODES == 0
        assert plan.slice_codes <= 1 << _gpu.TILED_INDEX_BITS
        assert plan.slices * k <= _gpu.MERGE_KEYS
    # Past the kernel's limits the per-query kernel takes over.
    assert _gpu.tiled_plan(4, 1000, 4, _gpu.TILED_MAX_K + 1, 132) is None
    assert _gpu.tiled_plan(4, 1000, _gpu.TILED_MAX_WORDS + 1, 10, 132) is None
    assert _gpu.tiled_plan(4, 2**31 - 1, 4, 128, 132) is None  # more slices than merge keys


def test_a_plan_that_does_not_cover_the_database_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        _gpu._check_plan(_gpu.TiledPlan(2, 256), 1000, 4, 10)
    with pytest.raises(ValueError, match="does not fit"):
        _gpu._check_plan(_gpu.TiledPlan(4, 300), 1000, 4, 10)
    _gpu._check_plan(_gpu.TiledPlan(4, 256), 1000, 4, 10)


def test_python_constants_match_the_kernel_source() -> None:
    source = CUDA_SOURCE.read_text()
    value = {
        name: int(number)
        for name, number in re.findall(r"constexpr int (kTiled\w+) = (\d+);", source)
    }
    assert value["kTiledWarps"] * 32 == _gpu._TILED_THREADS
    assert value["kTiledWarps"] * value["kTiledQueriesPerWarp"] == _gpu.TILED_QUERIES
    assert value["kTiledCodes"] == _gpu.TILED_CODES
    assert value["kTiledCodesPerLane"] == _gpu.TILED_LANE_CODES
    assert value["kTiledBuffer"] == _gpu.TILED_BUFFER
    assert value["kTiledMaxK"] == _gpu.TILED_MAX_K
    assert value["kTiledMaxWords"] == _gpu.TILED_MAX_WORDS
    assert value["kTiledIndexBits"] == _gpu.TILED_INDEX_BITS
    for words in range(1, _gpu.TILED_MAX_WORDS + 1):
        assert f"THRIFTY_HAMMING_TOPK_TILED({words})" in source


SIMT = Path(__file__).resolve().parent / "simt"


@pytest.fixture(scope="module")
def emulated_kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cuda/hamming.cu built for the host against simt/prelude.h, sanitizers on if they link."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("needs g++ (C++20) to run the kernel source on the host")
    build = tmp_path_factory.mktemp("simt")
    source = re.sub(
        r"extern __shared__ ([\w ]+?) (\w+)\[\];",
        r"\1* \2 = reinterpret_cast<\1*>(g_dynamic_shared);",
        CUDA_SOURCE.read_text(),
    )
    (build / "kernel.inc").write_text(source)
    binary = build / "simt"
    base = [compiler, "-std=c++20", "-O1", "-pthread", "-Wno-unknown-pragmas"]
    base += [f"-I{SIMT}", f"-I{build}", str(SIMT / "main.cpp"), "-o", str(binary)]
    sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    for flags in (sanitizers, []):
        done = subprocess.run(base + flags, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return binary
    pytest.skip(f"g++ cannot build the emulation: {done.stderr[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("width", "nq", "nb", "distinct", "k", "slice_codes"),
    [
        (32, 37, 3000, None, 10, None),
        (1, 5, 700, None, 10, 256),
        (9, 40, 1000, 3, 128, 512),
        (56, 33, 513, None, 33, None),
        (64, 3, 900, 3, 100, 256),
        (13, 3, 20, 2, 50, None),
    ],
)
def test_kernel_source_on_the_host_equals_twin_and_cpu(
    emulated_kernels: Path,
    tmp_path: Path,
    width: int,
    nq: int,
    nb: int,
    distinct: int | None,
    k: int,
    slice_codes: int | None,
) -> None:
    q = random_codes(width, nq, width, distinct)
    db = random_codes(width + 1, nb, width, distinct)
    kept = min(k, nb)
    if slice_codes is None:
        plan = auto_plan(nq, nb, width, k, 132)
    else:
        plan = _gpu.TiledPlan(-(-nb // slice_codes), slice_codes)
    words = -(-width // 8)
    header = np.array([nq, nb, words, kept, plan.slices, plan.slice_codes], np.int32)
    padded = [np.pad(x, ((0, 0), (0, 8 * words - width))) for x in (q, db)]
    (tmp_path / "in.bin").write_bytes(b"".join(x.tobytes() for x in (header, *padded)))
    subprocess.run([str(emulated_kernels), "in.bin", "out.bin"], cwd=tmp_path, check=True)
    raw = (tmp_path / "out.bin").read_bytes()
    lists = nq * plan.slices * kept
    partial = np.frombuffer(raw, np.uint32, lists).reshape(nq, plan.slices, kept)
    distances = np.frombuffer(raw, np.int32, nq * kept, 4 * lists).reshape(nq, kept)
    indices = np.frombuffer(raw, np.int64, nq * kept, 4 * lists + 4 * nq * kept)

    all_distances = np.unpackbits(q[:, None, :] ^ db[None, :, :], axis=2).sum(axis=2)
    for row, d in enumerate(all_distances.astype(np.uint64)):
        for s in range(plan.slices):
            start = s * plan.slice_codes
            want = slice_list(d[start:], min(plan.slice_codes, nb - start), kept)
            np.testing.assert_array_equal(partial[row, s], want)
    cpu_distances, cpu_indices = hamming.topk(q, db, k)
    np.testing.assert_array_equal(distances, cpu_distances)
    np.testing.assert_array_equal(indices.reshape(nq, kept), cpu_indices)
