"""The CUDA path of cdist and topk (``cuda/hamming.cu``), for CuPy arrays and CUDA tensors."""

from __future__ import annotations

from typing import Any

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


def topk_gpu(queries: Any, db: Any, k: int) -> tuple[Any, Any]:
    """GPU twin of ``_native.hamming_topk``: identical results, ties by index."""
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
        max_distance = 8 * width
        shared = 8 * words + 4 * (max_distance + 1)
        if shared <= _SHARED_BYTES:
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
            distances, indices = _sort_rows(distances, indices, nb)
        else:
            for start in range(0, nq, _FALLBACK_ROWS):
                chunk = q_words[start : start + _FALLBACK_ROWS]
                d = _cdist_words(chunk, db_words, len(chunk), nb)
                keys = d.astype(cupy.int64) * nb + cupy.arange(nb, dtype=cupy.int64)
                keys.sort(axis=1)
                keys = keys[:, :kept]
                distances[start : start + len(chunk)] = (keys // nb).astype(cupy.int32)
                indices[start : start + len(chunk)] = keys % nb
    return _like(template, distances), _like(template, indices)
