"""The CUDA cdist and topk kernels against their CPU twins (runs only where CuPy sees a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty import hamming
from thrifty.hamming._gpu import TiledPlan, TopkKernel, topk_gpu

pytestmark = pytest.mark.gpu


def random_codes(seed: int, n: int, width: int, distinct: int | None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if distinct is None:
        return rng.integers(0, 256, (n, width), dtype=np.uint8)
    palette = rng.integers(0, 256, (distinct, width), dtype=np.uint8)
    return palette[rng.integers(0, distinct, n)]


# Widths not a multiple of 8 exercise the zero padding; 2048 bytes is past the shared-memory
# histogram and takes the cdist-and-sort fallback. Few distinct codes make many ties.
CASES = [
    (1, 0, 37, None),
    (3, 5, 300, None),
    (8, 100, 1000, 3),
    (13, 64, 517, None),
    (32, 33, 2000, 5),
    (96, 17, 4099, None),
    (2048, 9, 300, 4),
]


@pytest.mark.parametrize(("width", "nq", "nb", "distinct"), CASES)
def test_cdist_on_cuda_equals_cpu(width: int, nq: int, nb: int, distinct: int | None) -> None:
    cupy = pytest.importorskip("cupy")
    q = random_codes(width, nq, width, distinct)
    db = random_codes(width + 1, nb, width, distinct)
    got = hamming.cdist(cupy.asarray(q), cupy.asarray(db))
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_array_equal(got.get(), hamming.cdist(q, db))


@pytest.mark.parametrize(("width", "nq", "nb", "distinct"), CASES)
@pytest.mark.parametrize("k", [1, 10, 257, 5000])
@pytest.mark.parametrize("kernel", ["auto", "per-query"])
def test_topk_on_cuda_equals_cpu(
    width: int, nq: int, nb: int, distinct: int | None, k: int, kernel: TopkKernel
) -> None:
    cupy = pytest.importorskip("cupy")
    if kernel == "per-query" and width > 1024:
        pytest.skip("the per-query kernel's histogram does not fit codes this wide")
    q = random_codes(width + 2, nq, width, distinct)
    db = random_codes(width + 3, nb, width, distinct)
    if kernel == "auto":
        distances, indices = hamming.topk(cupy.asarray(q), cupy.asarray(db), k)
    else:
        distances, indices = topk_gpu(cupy.asarray(q), cupy.asarray(db), k, kernel=kernel)
    cpu_distances, cpu_indices = hamming.topk(q, db, k)
    np.testing.assert_array_equal(distances.get(), cpu_distances)
    np.testing.assert_array_equal(indices.get(), cpu_indices)
    assert distances.dtype == cupy.int32
    assert indices.dtype == cupy.int64


# The query-tiled kernel: every code width it takes (1..8 words), query counts that leave a
# block part-empty, databases that are not whole tiles, k of 1, typical and its maximum, k
# past the database, and few distinct codes so that ties straddle the k-th slot.
TILED_CASES = [
    (1, 33, 3000, None, 10),
    (9, 70, 2500, 3, 128),
    (24, 5, 777, None, 1),
    (32, 64, 5000, 2, 10),
    (40, 3, 100, None, 500),
    (48, 40, 4099, 4, 64),
    (56, 1, 6000, None, 100),
    (64, 37, 3001, 3, 128),
]


@pytest.mark.parametrize(("width", "nq", "nb", "distinct", "k"), TILED_CASES)
@pytest.mark.parametrize("slice_codes", [None, 256, 1024])
def test_tiled_topk_equals_cpu(
    width: int, nq: int, nb: int, distinct: int | None, k: int, slice_codes: int | None
) -> None:
    cupy = pytest.importorskip("cupy")
    q = random_codes(width + 4, nq, width, distinct)
    db = random_codes(width + 5, nb, width, distinct)
    plan = None if slice_codes is None else TiledPlan(-(-nb // slice_codes), slice_codes)
    distances, indices = topk_gpu(cupy.asarray(q), cupy.asarray(db), k, kernel="tiled", plan=plan)
    cpu_distances, cpu_indices = hamming.topk(q, db, k)
    np.testing.assert_array_equal(distances.get(), cpu_distances)
    np.testing.assert_array_equal(indices.get(), cpu_indices)


def test_tiled_topk_on_many_blocks_equals_cpu() -> None:
    """Enough queries and codes for the planner to cut the database into several slices."""
    cupy = pytest.importorskip("cupy")
    q = random_codes(11, 1000, 32, None)
    db = np.concatenate([random_codes(12, 150_000, 32, None), random_codes(13, 50_000, 32, 50)])
    for k in (10, 128):
        distances, indices = topk_gpu(cupy.asarray(q), cupy.asarray(db), k, kernel="tiled")
        cpu_distances, cpu_indices = hamming.topk(q, db, k)
        np.testing.assert_array_equal(distances.get(), cpu_distances)
        np.testing.assert_array_equal(indices.get(), cpu_indices)


def test_codes_that_start_mid_word_are_copied_not_misread() -> None:
    """Whole-word codes are read in place unless their buffer starts off an 8-byte boundary."""
    cupy = pytest.importorskip("cupy")
    q = random_codes(21, 40, 16, None)
    db = random_codes(22, 900, 16, 3)
    buffer = cupy.zeros(db.size + 1, dtype=cupy.uint8)
    buffer[1:] = cupy.asarray(db.ravel())
    shifted = buffer[1:].reshape(db.shape)
    assert shifted.data.ptr % 8 == 1
    distances, indices = hamming.topk(cupy.asarray(q), shifted, 10)
    cpu_distances, cpu_indices = hamming.topk(q, db, 10)
    np.testing.assert_array_equal(distances.get(), cpu_distances)
    np.testing.assert_array_equal(indices.get(), cpu_indices)
    np.testing.assert_array_equal(hamming.cdist(shifted, q).get(), hamming.cdist(db, q))


def test_torch_cuda_tensors_give_torch_results() -> None:
    torch = pytest.importorskip("torch")
    q = random_codes(0, 20, 16, 4)
    db = random_codes(1, 700, 16, 4)
    distances, indices = hamming.topk(torch.from_numpy(q).cuda(), torch.from_numpy(db).cuda(), 7)
    assert distances.is_cuda
    assert indices.is_cuda
    cpu_distances, cpu_indices = hamming.topk(q, db, 7)
    np.testing.assert_array_equal(distances.cpu().numpy(), cpu_distances)
    np.testing.assert_array_equal(indices.cpu().numpy(), cpu_indices)
    full = hamming.cdist(torch.from_numpy(q).cuda(), db)
    assert full.is_cuda
    np.testing.assert_array_equal(full.cpu().numpy(), hamming.cdist(q, db))


def test_simhash_on_cuda_matches_cpu_up_to_rounding() -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(200, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cpu = hamming.simhash(x, 128, seed=3)
    gpu = hamming.simhash(x.cuda(), 128, seed=3)
    assert gpu.is_cuda
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu)
    single = hamming.simhash(x.float().cuda(), 128, seed=3).cpu().numpy()
    # float32 projections may flip a sign within rounding of zero, and nowhere else.
    assert (hamming.cdist(single, cpu).diagonal() <= 2).all()
