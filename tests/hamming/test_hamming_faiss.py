"""Binary search agrees with faiss's ``IndexBinaryFlat``, the field's reference."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty import hamming

faiss = pytest.importorskip("faiss")


@pytest.mark.parametrize(("bytes_per_code", "rows"), [(32, 5000), (128, 2000), (8, 3000)])
def test_topk_and_radius_equal_index_binary_flat(bytes_per_code: int, rows: int) -> None:
    rng = np.random.default_rng(bytes_per_code)
    db = rng.integers(0, 256, size=(rows, bytes_per_code), dtype=np.uint8)
    # Near copies of database rows, so the nearest neighbours are close and tied often.
    queries = db[rng.integers(0, rows, size=50)].copy()
    queries[:, 0] ^= rng.integers(0, 256, size=50, dtype=np.uint8)
    index = faiss.IndexBinaryFlat(8 * bytes_per_code)
    index.add(db)
    k = 10
    faiss_d, faiss_i = index.search(queries, k)
    ours_d, ours_i = hamming.topk(queries, db, k)
    np.testing.assert_array_equal(ours_d, faiss_d)
    for q in range(len(queries)):
        # faiss orders ties as it likes: compare the ids by distance, with the boundary
        # distance (where faiss may have cut a tie differently) left out.
        last = ours_d[q, -1]
        for d in np.unique(ours_d[q][ours_d[q] < last]):
            assert set(ours_i[q][ours_d[q] == d]) == set(faiss_i[q][faiss_d[q] == d])
        # Our order: by distance, then by index.
        keys = list(zip(ours_d[q].tolist(), ours_i[q].tolist(), strict=True))
        assert keys == sorted(keys)

    r = 4 * bytes_per_code  # half the bits: a good share of the database
    limits, distances, ids = index.range_search(queries, r + 1)  # faiss: distance < radius
    ours = hamming.radius(queries, db, r)
    for q, (ours_ids, ours_distances) in enumerate(ours):
        theirs = dict(
            zip(
                ids[limits[q] : limits[q + 1]].tolist(),
                distances[limits[q] : limits[q + 1]].tolist(),
                strict=True,
            )
        )
        assert dict(zip(ours_ids.tolist(), ours_distances.tolist(), strict=True)) == theirs
