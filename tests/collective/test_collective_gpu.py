"""CUDA tensors and CuPy arrays, staged through pinned host buffers (needs a GPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from collective_harness import run_peers

pytestmark = pytest.mark.gpu


def _cuda_peer(comm: Any) -> list[str]:
    import torch

    n, rank = comm.world_size, comm.rank
    failures = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int64):
        x = torch.full((1001,), rank + 1, dtype=dtype, device="cuda")
        pointer = x.data_ptr()
        comm.all_reduce(x)
        if x.data_ptr() != pointer or not x.is_cuda:
            failures.append(f"{dtype}: not in place")
        if not torch.equal(x.cpu(), torch.full((1001,), n * (n + 1) // 2, dtype=dtype)):
            failures.append(f"{dtype}: {x[:3]}")
    y = torch.arange(6, dtype=torch.float32, device="cuda") * (rank + 1)
    handle = comm.all_reduce_async(y, op="max")
    handle.wait()
    if not torch.equal(y.cpu(), torch.arange(6, dtype=torch.float32) * n):
        failures.append(f"async: {y}")
    gathered = comm.all_gather(torch.full((2,), rank, dtype=torch.bfloat16, device="cuda"))
    if not (gathered.is_cuda and gathered.dtype == torch.bfloat16 and gathered.shape == (n, 2)):
        failures.append(f"all_gather: {gathered}")
    z = torch.full((4,), float(rank), device="cuda")
    comm.broadcast(z, 0)
    if not torch.equal(z.cpu(), torch.zeros(4)):
        failures.append(f"broadcast: {z}")
    if not 0 < len(comm._staging) <= 4:
        failures.append(f"pinned buffers cached: {len(comm._staging)}")
    return failures


@pytest.mark.timeout(180)
def test_cuda_tensors_are_staged_and_written_back() -> None:
    pytest.importorskip("torch")
    assert run_peers(2, _cuda_peer) == [[], []]


def _cupy_peer(comm: Any) -> list[str]:
    import cupy

    x = cupy.full(777, comm.rank + 1, dtype=cupy.float32)
    comm.all_reduce(x, op="avg")
    expected = np.full(777, (comm.world_size + 1) / 2, dtype=np.float32)
    return [] if np.array_equal(cupy.asnumpy(x), expected) else [f"cupy: {x[:3]}"]


@pytest.mark.timeout(180)
def test_cupy_arrays_are_staged_and_written_back() -> None:
    pytest.importorskip("cupy")
    assert run_peers(2, _cupy_peer) == [[], []]
