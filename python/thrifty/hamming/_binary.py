"""Packed binary codes: packing, all-pairs distances, top-k and radius search."""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array, is_gpu_array
from thrifty._checks import check_int
from thrifty.errors import InvalidArgumentError
from thrifty.hamming._inputs import UInt8Array, codes, same_width

Int32Array = np.ndarray[Any, np.dtype[np.int32]]
Int64Array = np.ndarray[Any, np.dtype[np.int64]]

_INT32_MAX = 2**31 - 1


def pack(bits: Any) -> UInt8Array:
    """Pack a 2-D array of 0/1 bits into rows of bytes, like ``numpy.packbits(bits, axis=1)``.

    The first bit of each group of eight becomes the byte's most significant bit, and each
    row is zero-padded to whole bytes on its own, so that row ``i`` becomes one code of
    ``ceil(dims / 8)`` bytes. Any non-zero value counts as 1.

    Parameters
    ----------
    bits : array or tensor of bool or integers, shape (rows, dims)

    Returns
    -------
    numpy.ndarray of uint8, shape (rows, ceil(dims / 8))

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import hamming
    >>> hamming.pack(np.array([[1, 0, 0, 0, 0, 0, 0, 1, 1], [0, 1, 0, 0, 0, 0, 0, 0, 0]]))
    array([[129, 128],
           [ 64,   0]], dtype=uint8)
    """
    array = host_array(bits, "bits", kinds="biu", ndim=2)
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    elif array.dtype != np.uint8:
        array = (array != 0).view(np.uint8)
    return _native.hamming_pack(array)


def cdist(a: Any, b: Any) -> Any:
    """The Hamming distance between every code of ``a`` and every code of ``b``.

    ``out[i, j] = popcount(a[i] XOR b[j])``. On the CPU the popcount kernel is picked at run
    time (AVX-512 VPOPCNTDQ, AVX2, NEON or scalar; :func:`popcount_kernel`); CuPy arrays and
    CUDA tensors run ``cuda/hamming.cu`` and give identical results.

    Parameters
    ----------
    a, b : uint8 arrays or tensors, shapes (na, bytes) and (nb, bytes)
        Packed codes of the same width (see :func:`pack`).

    Returns
    -------
    numpy.ndarray of int32, shape (na, nb)
        A CuPy array or CUDA tensor (after the first GPU argument's type) on the GPU path.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import hamming
    >>> a = np.array([[0b1111_0000], [0b0000_0001]], dtype=np.uint8)
    >>> hamming.cdist(a, a)
    array([[0, 5],
           [5, 0]], dtype=int32)
    """
    if is_gpu_array(a) or is_gpu_array(b):
        from thrifty.hamming._gpu import cdist_gpu

        return cdist_gpu(a, b)
    a_codes, b_codes = codes(a, "a"), codes(b, "b")
    same_width(("a", a_codes), ("b", b_codes))
    return _native.hamming_cdist(a_codes, b_codes)


def topk(queries: Any, db: Any, k: int) -> tuple[Any, Any]:
    """The ``k`` database codes nearest to each query, ordered by (distance, index).

    Among codes at the same distance the lower database index comes first, and the ``k``
    kept are the ``k`` smallest (distance, index) pairs, so the result is fully determined;
    the CUDA path (CuPy arrays, CUDA tensors) returns exactly the same arrays.

    Parameters
    ----------
    queries : uint8 array or tensor, shape (nq, bytes)
    db : uint8 array or tensor, shape (nb, bytes)
    k : int
        At least 1; more than ``nb`` keeps all ``nb``.

    Returns
    -------
    distances : numpy.ndarray of int32, shape (nq, min(k, nb))
    indices : numpy.ndarray of int64, shape (nq, min(k, nb))

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import hamming
    >>> db = np.array([[0b0000_0011], [0b0000_0001], [0b1111_1111], [0b0000_0010]], np.uint8)
    >>> distances, indices = hamming.topk(np.array([[0]], np.uint8), db, 3)
    >>> distances.tolist(), indices.tolist()
    ([[1, 1, 2]], [[1, 3, 0]])
    """
    kept = check_int(k, "k", minimum=1)
    if is_gpu_array(queries) or is_gpu_array(db):
        from thrifty.hamming._gpu import topk_gpu

        return topk_gpu(queries, db, kept)
    q_codes, db_codes = codes(queries, "queries"), codes(db, "db")
    same_width(("queries", q_codes), ("db", db_codes))
    # Any k beyond the database keeps it all; clamping keeps huge k inside a usize.
    nearest = _native.hamming_topk(q_codes, db_codes, min(kept, max(len(db_codes), 1)))
    return nearest.distances, nearest.indices


def radius_csr(queries: Any, db: Any, r: int) -> tuple[Int64Array, Int64Array, Int32Array]:
    """:func:`radius` as CSR arrays ``(offsets, indices, distances)``.

    Query ``i``'s hits are ``indices[offsets[i]:offsets[i + 1]]``, ordered by (distance,
    index); ``offsets`` has ``nq + 1`` entries. This is the layout to use for many queries.
    """
    bound = check_int(r, "r", minimum=0)
    if bound > _INT32_MAX:
        raise InvalidArgumentError(f"r must be at most {_INT32_MAX}, got {bound}", "r")
    q_codes, db_codes = codes(queries, "queries"), codes(db, "db")
    same_width(("queries", q_codes), ("db", db_codes))
    hits = _native.hamming_radius(q_codes, db_codes, bound)
    return hits.offsets, hits.indices, hits.distances


def radius(queries: Any, db: Any, r: int) -> list[tuple[Int64Array, Int32Array]]:
    """Every database code within Hamming distance ``r`` (inclusive) of each query.

    Parameters
    ----------
    queries : uint8 array or tensor, shape (nq, bytes)
    db : uint8 array or tensor, shape (nb, bytes)
    r : int
        The radius, ``>= 0``.

    Returns
    -------
    list of (indices, distances), one per query
        ``indices`` (int64) and ``distances`` (int32) of the hits, ordered by (distance,
        index). They are views into one CSR result; :func:`radius_csr` returns that directly.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import hamming
    >>> db = np.array([[0b0000_0011], [0b0000_0001], [0b1111_1111]], np.uint8)
    >>> [(i.tolist(), d.tolist()) for i, d in hamming.radius(np.array([[0]], np.uint8), db, 2)]
    [([1, 0], [1, 2])]
    """
    offsets, indices, distances = radius_csr(queries, db, r)
    if offsets.size == 1:
        return []
    cuts = offsets[1:-1]
    return list(zip(np.split(indices, cuts), np.split(distances, cuts), strict=True))


def popcount_kernel() -> str:
    """The CPU popcount kernel in use: "avx512-vpopcntdq", "avx2", "neon" or "scalar"."""
    return _native.hamming_kernel()
