"""Near-duplicate groups: connected components of the radius graph over packed codes."""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty._arrays import is_cupy_array, is_gpu_array
from thrifty._checks import check_int
from thrifty.hamming._binary import radius_csr
from thrifty.hamming._inputs import codes as as_codes

# Queries per radius search, which bounds the memory of one batch of hits.
_CHUNK = 4096

Int64Array = np.ndarray[Any, np.dtype[np.int64]]


def components(n: int, first: Int64Array, second: Int64Array) -> list[list[int]]:
    """Connected components with at least two members of the graph on ``0 .. n - 1``.

    Edges are ``(first[e], second[e])``. Each group is sorted, and groups are ordered by
    their smallest member. Union-find by hooking the larger root onto the smaller, then
    pointer jumping, vectorised over all edges at once.
    """
    parent = np.arange(n, dtype=np.int64)
    first = np.asarray(first, dtype=np.int64)
    second = np.asarray(second, dtype=np.int64)
    while True:
        root_a, root_b = parent[first], parent[second]
        differ = root_a != root_b
        if not differ.any():
            break
        low = np.minimum(root_a[differ], root_b[differ])
        high = np.maximum(root_a[differ], root_b[differ])
        # parent[x] <= x always holds, so hooking never makes a cycle.
        np.minimum.at(parent, high, low)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        first, second = first[differ], second[differ]
    order = np.argsort(parent, kind="stable")
    roots = parent[order]
    starts = np.flatnonzero(np.r_[True, roots[1:] != roots[:-1]])
    sizes = np.diff(np.r_[starts, n])
    return [
        order[start : start + size].tolist()
        for start, size in zip(starts, sizes, strict=True)
        if size > 1
    ]


def near_duplicates(codes: Any, radius: int) -> list[list[int]]:
    """Groups of codes linked by chains of Hamming distance at most ``radius``.

    Two codes are linked when their distance is ``<= radius``; a group is a connected
    component of that graph with at least two members (so members of one group may be
    further apart than ``radius`` through intermediate codes). To deduplicate training data,
    keep the first index of each group and drop the others.

    The search is exhaustive (every pair is compared, in Rust, a batch of queries at a
    time), so it finds every link; for millions of codes, shard by a code prefix first.

    Parameters
    ----------
    codes : uint8 array or tensor, shape (n, bytes)
        Packed codes, e.g. from :func:`simhash`. GPU codes are copied to the host.
    radius : int
        ``>= 0``; 0 groups exact duplicates.

    Returns
    -------
    list of list of int
        Each group sorted ascending; groups ordered by their smallest index. Codes that are
        near no other code appear in no group.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import hamming
    >>> codes = np.array([[0b0000_0000], [0b1111_0000], [0b0000_0001], [0b1111_0001],
    ...                   [0b0101_0101], [0b0000_0011]], dtype=np.uint8)
    >>> hamming.near_duplicates(codes, 1)
    [[0, 2, 5], [1, 3]]
    """
    radius = check_int(radius, "radius", minimum=0)
    if is_gpu_array(codes):
        codes = codes.get() if is_cupy_array(codes) else codes.detach().cpu()
    db = as_codes(codes, "codes")
    n = len(db)
    firsts: list[Int64Array] = []
    seconds: list[Int64Array] = []
    for start in range(0, n, _CHUNK):
        offsets, indices, _ = radius_csr(db[start : start + _CHUNK], db, int(radius))
        rows = start + np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        # Each link is found from both ends; one is enough.
        keep = indices > rows
        firsts.append(rows[keep])
        seconds.append(indices[keep])
    if not firsts:
        return []
    return components(n, np.concatenate(firsts), np.concatenate(seconds))
