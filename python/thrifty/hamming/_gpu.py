"""The CUDA path of cdist and topk (``cuda/hamming.cu``), for CuPy arrays and CUDA tensors."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np

from thrifty import _cuda
from thrifty._arrays import is_gpu_array, is_torch_tensor
from thrifty._extras import require
from thrifty.errors import DTypeError, ShapeError

_TILE = 16  # kTile in cuda/hamming.cu
_THREADS = 256  # threads per top-k block, a multiple of 32
_MAX_GRID_Y = 65535
# The top-k kernel keeps the query and a histogram of every possible distance in shared
# memory; wider codes than this fall back to cdist and a sort. The default limit per block is
# 48 KiB, static shared memory (the scan's warp sums) included, hence the margin.
_SHARED_BYTES = 47 * 1024
_FALLBACK_ROWS = 1024  # queries per cdist chunk in the fallback

# The query-tiled top-k (hamming_topk_tiled_w<words> and hamming_topk_merge). These mirror the
# kTiled* constants of cuda/hamming.cu; a test reads them back from the source.
TILED_QUERIES = 32  # queries per block
TILED_CODES = 256  # database codes per shared-memory tile
TILED_LANE_CODES = 2  # codes a lane scores per step
TILED_BUFFER = 64  # candidate slots per query
TILED_MAX_K = 128
TILED_MAX_WORDS = 8  # codes of up to 512 bits
TILED_INDEX_BITS = 22  # a slice holds at most 2**22 codes
_TILED_THREADS = 256
_MERGE_THREADS = 128
# The merge kernel holds slices * k 64-bit keys of one query in shared memory (40 KiB).
MERGE_KEYS = 5120
# Blocks per multiprocessor to aim for: several waves, so one slow block does not idle the GPU.
_BLOCKS_PER_SM = 8
# Each slice's first tile admits every code (its list is still empty); slices of at least
# this many tiles keep that start-up a small share of the slice's work.
_MIN_SLICE_TILES = 8

TopkKernel = Literal["auto", "tiled", "per-query", "cdist"]


@dataclass(frozen=True)
class TiledPlan:
    """How the tiled top-k cuts the database: ``slices`` runs of ``slice_codes`` codes (the
    last one shorter), each searched by its own column of blocks."""

    slices: int
    slice_codes: int


def tiled_plan(nq: int, nb: int, words: int, k: int, multiprocessors: int) -> TiledPlan | None:
    """The slicing the tiled top-k uses, or None where it does not apply.

    It applies for ``1 <= k <= TILED_MAX_K`` (and ``k <= nb``), codes of at most
    ``TILED_MAX_WORDS`` 64-bit words, and databases that ``MERGE_KEYS // k`` slices of
    ``2**TILED_INDEX_BITS`` codes cover; the other cases take the one-block-per-query kernel.
    """
    if nq < 1 or not 1 <= k <= min(TILED_MAX_K, nb) or not 1 <= words <= TILED_MAX_WORDS:
        return None
    most_slices = MERGE_KEYS // k
    query_tiles = -(-nq // TILED_QUERIES)
    wanted = -(-_BLOCKS_PER_SM * multiprocessors // query_tiles)
    worth_it = -(-nb // (_MIN_SLICE_TILES * TILED_CODES))
    fewest = -(-nb // (1 << TILED_INDEX_BITS))
    slices = max(fewest, min(wanted, worth_it, most_slices), 1)
    if slices > most_slices:
        return None
    # Whole tiles per slice keep every slice's global reads aligned like the first one's.
    slice_codes = -(-nb // slices)
    slice_codes = min(-(-slice_codes // TILED_CODES) * TILED_CODES, 1 << TILED_INDEX_BITS)
    return TiledPlan(-(-nb // slice_codes), slice_codes)


def _check_plan(plan: TiledPlan, nb: int, words: int, k: int) -> None:
    """A caller's plan must meet what the kernels assume (see :func:`tiled_plan`)."""
    ok = (
        1 <= k <= TILED_MAX_K
        and 1 <= words <= TILED_MAX_WORDS
        and 1 <= plan.slice_codes <= 1 << TILED_INDEX_BITS
        and plan.slice_codes % TILED_CODES == 0
        and plan.slices == -(-nb // plan.slice_codes)
        and plan.slices * k <= MERGE_KEYS
    )
    if not ok:
        raise ValueError(f"{plan} does not fit k={k} over {nb} codes of {words} words")


@cache
def _multiprocessors(device: int) -> int:
    cupy = require("cupy")
    runtime = cupy.cuda.runtime
    return int(runtime.deviceGetAttribute(runtime.cudaDevAttrMultiProcessorCount, device))


def _device_codes(x: Any, argument: str) -> Any:
    cupy = require("cupy")
    if is_torch_tensor(x):
        x = cupy.from_dlpack(x.detach().contiguous())
    # CuPy's ascontiguousarray takes device arrays only; NumPy codes are copied over first.
    x = cupy.ascontiguousarray(cupy.asarray(x))
    if x.dtype != cupy.uint8:
        raise DTypeError(
            f"{argument} must be packed codes of dtype uint8, got dtype {x.dtype}", argument
        )
    if x.ndim != 2 or x.shape[1] == 0:
        raise ShapeError(
            f"{argument} must be 2-D (codes, bytes per code) with at least one byte per code, "
            f"got shape {tuple(x.shape)}",
            argument,
        )
    return x


def _words(codes: Any) -> Any:
    """Each code zero-padded to whole 64-bit words (zeros XOR to zero: distances unchanged)."""
    cupy = require("cupy")
    rows, width = (int(s) for s in codes.shape)
    # Whole, aligned words need no copy (the kernels only read them); a view into someone
    # else's buffer may start mid-word, and 64-bit loads must not.
    if width % 8 == 0 and int(codes.data.ptr) % 8 == 0:
        return codes.view(cupy.uint64)
    words = -(-width // 8)
    padded = cupy.zeros((rows, words * 8), dtype=cupy.uint8)
    padded[:, :width] = codes
    return padded.view(cupy.uint64)


def _like(template: Any, array: Any) -> Any:
    """Return ``array`` (CuPy) as a torch tensor when ``template`` is one."""
    if is_torch_tensor(template):
        torch = require("torch")
        return torch.from_dlpack(array)
    return array


def _template(*arrays: Any) -> Any:
    return next(a for a in arrays if is_gpu_array(a))


def _cdist_words(a: Any, b: Any, na: int, nb: int) -> Any:
    cupy = require("cupy")
    out = cupy.empty((na, nb), dtype=cupy.int32)
    if na == 0 or nb == 0:
        return out
    words = int(a.shape[1])
    grid = (-(-nb // _TILE), min(-(-na // _TILE), _MAX_GRID_Y))
    kernel = _cuda.function("hamming", "hamming_cdist")
    kernel(grid, (_TILE, _TILE), (a, b, np.int32(na), np.int32(nb), np.int32(words), out))
    return out


def cdist_gpu(a: Any, b: Any) -> Any:
    """GPU twin of ``_native.hamming_cdist``; the result follows the first GPU argument."""
    template = _template(a, b)
    a_codes, b_codes = _device_codes(a, "a"), _device_codes(b, "b")
    _check_width(a_codes, b_codes, "a", "b")
    out = _cdist_words(_words(a_codes), _words(b_codes), len(a_codes), len(b_codes))
    return _like(template, out)


def _check_width(a: Any, b: Any, name_a: str, name_b: str) -> None:
    if int(a.shape[1]) != int(b.shape[1]):
        raise ShapeError(
            f"{name_b} must hold codes of {int(a.shape[1])} bytes like {name_a}, "
            f"got {int(b.shape[1])} bytes per code",
            name_b,
        )


def _sort_rows(distances: Any, indices: Any, nb: int) -> tuple[Any, Any]:
    """Sort each row by (distance, index) through one int64 key per pair."""
    cupy = require("cupy")
    keys = distances.astype(cupy.int64) * nb + indices
    keys.sort(axis=1)
    return (keys // nb).astype(cupy.int32), keys % nb


def _topk_tiled(
    q_words: Any, db_words: Any, kept: int, plan: TiledPlan, distances: Any, indices: Any
) -> None:
    cupy = require("cupy")
    nq, nb, words = len(q_words), len(db_words), int(q_words.shape[1])
    partial = cupy.empty((nq, plan.slices, kept), dtype=cupy.uint32)
    shared = 8 * words * (TILED_CODES + 1) + 4 * TILED_QUERIES * (kept + TILED_BUFFER)
    kernel = _cuda.function("hamming", f"hamming_topk_tiled_w{words}")
    grid = (-(-nq // TILED_QUERIES), plan.slices)
    args = (
        q_words,
        db_words,
        np.int32(nq),
        np.int32(nb),
        np.int32(kept),
        np.int32(plan.slice_codes),
        partial,
    )
    kernel(grid, (_TILED_THREADS,), args, shared_mem=shared)
    merge = _cuda.function("hamming", "hamming_topk_merge")
    args = (
        partial,
        np.int32(nq),
        np.int32(plan.slices),
        np.int32(kept),
        np.int32(plan.slice_codes),
        distances,
        indices,
    )
    merge((min(nq, _MAX_GRID_Y),), (_MERGE_THREADS,), args, shared_mem=8 * plan.slices * kept)


def _topk_per_query(q_words: Any, db_words: Any, kept: int, width: int) -> tuple[Any, Any]:
    cupy = require("cupy")
    nq, nb, words = len(q_words), len(db_words), int(q_words.shape[1])
    distances = cupy.empty((nq, kept), dtype=cupy.int32)
    indices = cupy.empty((nq, kept), dtype=cupy.int64)
    max_distance = 8 * width
    shared = 8 * words + 4 * (max_distance + 1)
    kernel = _cuda.function("hamming", "hamming_topk")
    args = (
        q_words,
        db_words,
        np.int32(nq),
        np.int32(nb),
        np.int32(words),
        np.int32(max_distance),
        np.int32(kept),
        distances,
        indices,
    )
    kernel((nq,), (_THREADS,), args, shared_mem=shared)
    return _sort_rows(distances, indices, nb)


def _topk_cdist(q_words: Any, db_words: Any, kept: int, distances: Any, indices: Any) -> None:
    cupy = require("cupy")
    nq, nb = len(q_words), len(db_words)
    for start in range(0, nq, _FALLBACK_ROWS):
        chunk = q_words[start : start + _FALLBACK_ROWS]
        d = _cdist_words(chunk, db_words, len(chunk), nb)
        keys = d.astype(cupy.int64) * nb + cupy.arange(nb, dtype=cupy.int64)
        keys.sort(axis=1)
        keys = keys[:, :kept]
        distances[start : start + len(chunk)] = (keys // nb).astype(cupy.int32)
        indices[start : start + len(chunk)] = keys % nb


def topk_gpu(
    queries: Any,
    db: Any,
    k: int,
    *,
    kernel: TopkKernel = "auto",
    plan: TiledPlan | None = None,
) -> tuple[Any, Any]:
    """GPU twin of ``_native.hamming_topk``: identical results, ties by index.

    ``kernel="auto"`` takes the query-tiled kernel where :func:`tiled_plan` allows (k up to
    ``TILED_MAX_K``, codes up to 512 bits), else the one-block-per-query kernel while its
    distance histogram fits in shared memory, else cdist and a sort. The other values force
    one path (benchmarks and tests), and ``plan`` overrides the tiled kernel's slicing.
    """
    cupy = require("cupy")
    template = _template(queries, db)
    q_codes, db_codes = _device_codes(queries, "queries"), _device_codes(db, "db")
    _check_width(q_codes, db_codes, "queries", "db")
    nq, nb, width = len(q_codes), len(db_codes), int(q_codes.shape[1])
    kept = min(k, nb)
    distances = cupy.empty((nq, kept), dtype=cupy.int32)
    indices = cupy.empty((nq, kept), dtype=cupy.int64)
    if nq and kept:
        q_words, db_words = _words(q_codes), _words(db_codes)
        words = int(q_words.shape[1])
        if plan is not None:
            _check_plan(plan, nb, words, kept)
        elif kernel in ("auto", "tiled"):
            sms = _multiprocessors(int(cupy.cuda.Device().id))
            plan = tiled_plan(nq, nb, words, kept, sms)
        fits_histogram = 8 * words + 4 * (8 * width + 1) <= _SHARED_BYTES
        if kernel == "tiled" and plan is None:
            raise ValueError(f"the tiled top-k does not take k={kept} over {words}-word codes")
        if kernel == "per-query" and not fits_histogram:
            raise ValueError(f"the per-query top-k's histogram does not fit {width}-byte codes")
        if kernel in ("auto", "tiled") and plan is not None:
            _topk_tiled(q_words, db_words, kept, plan, distances, indices)
        elif kernel == "per-query" or (kernel == "auto" and fits_histogram):
            distances, indices = _topk_per_query(q_words, db_words, kept, width)
        else:
            _topk_cdist(q_words, db_words, kept, distances, indices)
    return _like(template, distances), _like(template, indices)
