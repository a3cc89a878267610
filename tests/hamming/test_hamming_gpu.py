"""The CUDA cdist and topk kernels against their CPU twins (runs only where CuPy sees a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty import hamming

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
def test_topk_on_cuda_equals_cpu(
    width: int, nq: int, nb: int, distinct: int | None, k: int
) -> None:
    cupy = pytest.importorskip("cupy")
    q = random_codes(width + 2, nq, width, distinct)
    db = random_codes(width + 3, nb, width, distinct)
    distances, indices = hamming.topk(cupy.asarray(q), cupy.asarray(db), k)
    cpu_distances, cpu_indices = hamming.topk(q, db, k)
    np.testing.assert_array_equal(distances.get(), cpu_distances)
    np.testing.assert_array_equal(indices.get(), cpu_indices)
    assert distances.dtype == cupy.int32
    assert indices.dtype == cupy.int64


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
