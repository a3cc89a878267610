"""CPU torch tensors, bfloat16 included: in place, without copies, on real peers."""

from __future__ import annotations

from typing import Any

import pytest
from collective_harness import run_peers

from thrifty.errors import DTypeError

torch = pytest.importorskip("torch")

DTYPES = ("float32", "bfloat16", "float16", "float64", "int32", "int64")
SIZES = (1, 7, 1000, 100_003)


def _input(rank: int, dtype: str, size: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(rank * 1000 + size + DTYPES.index(dtype))
    # Integers in [-16, 16]: every sum is exact even in bfloat16, in any order.
    values = torch.randint(-16, 17, (size,), generator=generator)
    return values.to(getattr(torch, dtype))


def _reference(inputs: list[Any], op: str) -> Any:
    import torch

    stack = torch.stack(inputs)
    dtype, n = stack.dtype, len(inputs)
    if op == "max":
        return stack.amax(0)
    if op == "min":
        return stack.amin(0)
    total = stack.sum(0, dtype=torch.float64 if dtype.is_floating_point else torch.int64)
    if op == "sum":
        return total.to(dtype)
    if not dtype.is_floating_point:
        return torch.div(total, n, rounding_mode="floor").to(dtype)
    if dtype == torch.float64:
        return total / n
    # float32, float16 and bfloat16 divide in float32 and round once.
    return (total.to(torch.float32) / n).to(dtype)


def _torch_peer(comm: Any) -> tuple[list[str], str]:
    import numpy as np
    import torch

    n, rank = comm.world_size, comm.rank
    failures: list[str] = []
    for dtype in DTYPES:
        for size in SIZES:
            inputs = [_input(r, dtype, size) for r in range(n)]
            for op in ("sum", "avg", "max", "min"):
                x = inputs[rank].clone()
                pointer = x.data_ptr()
                comm.all_reduce(x, op=op)
                expected = _reference(inputs, op)
                if x.data_ptr() != pointer or x.dtype != expected.dtype:
                    failures.append(f"{dtype} {op}: a different tensor")
                elif not torch.equal(x, expected):
                    failures.append(f"{dtype} {size} {op}: {x[:3].tolist()} vs {expected[:3]}")

    # a parameter that requires grad is reduced in place through .detach()
    weight = torch.nn.Parameter(torch.full((3, 4), float(rank + 1)))
    comm.all_reduce(weight, op="avg")
    if not torch.equal(weight.detach(), torch.full((3, 4), (n + 1) / 2)):
        failures.append(f"parameter: {weight}")
    # quantized bfloat16
    q = torch.linspace(-1, 1, 500, dtype=torch.bfloat16) * (rank + 1)
    comm.all_reduce(q, quantize="int8")
    if not torch.allclose(q.float(), torch.linspace(-1, 1, 500) * n * (n + 1) / 2, atol=0.15):
        failures.append("quantized bfloat16")

    # broadcast, all_gather, pair_average, sync_state
    b = torch.full((5,), rank + 0.5, dtype=torch.bfloat16)
    comm.broadcast(b, 1)
    if not torch.equal(b, torch.full((5,), 1.5, dtype=torch.bfloat16)):
        failures.append(f"broadcast: {b}")
    gathered = comm.all_gather(torch.full((2, 2), rank, dtype=torch.bfloat16))
    if not (
        isinstance(gathered, torch.Tensor)
        and gathered.dtype == torch.bfloat16
        and gathered.shape == (n, 2, 2)
        and gathered[:, 0, 0].tolist() == list(range(n))
    ):
        failures.append(f"all_gather: {gathered}")
    p = torch.full((7,), float(rank * 2), dtype=torch.bfloat16)
    group = comm.pair_average(p, 0)
    if not torch.equal(
        p, torch.full((7,), float(sum(2 * r for r in group)) / len(group)).bfloat16()
    ):
        failures.append(f"pair_average: {p}")
    state = {"w": torch.full((4,), float(rank == n - 1), dtype=torch.bfloat16)}
    report = comm.sync_state(state, 0)
    if not torch.equal(state["w"], torch.zeros(4, dtype=torch.bfloat16)):
        failures.append(f"sync_state: {state['w']} after {report}")
    if report.fetched != (("w",) if rank == n - 1 else ()):
        failures.append(f"sync_state fetched {report.fetched}")

    # refused before anything is sent
    for bad, argument in (
        (torch.zeros(4, 4).t(), "array"),
        (torch.zeros(4, dtype=torch.uint8), "array"),
        (torch.zeros(4, dtype=torch.complex64), "array"),
        (np.zeros(4, dtype=np.uint16), "array"),
        ([1.0, 2.0], "array"),
    ):
        try:
            comm.all_reduce(bad)
            failures.append(f"no error for {type(bad).__name__}")
        except DTypeError as error:
            if error.argument != argument:
                failures.append(f"names {error.argument}")
    comm.barrier()
    return failures, report.state_hash


@pytest.mark.timeout(180)
def test_torch_tensors_every_dtype_in_place() -> None:
    results = run_peers(3, _torch_peer)
    assert [failures for failures, _ in results] == [[], [], []]
    assert len({state_hash for _, state_hash in results}) == 1
