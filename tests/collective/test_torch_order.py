"""Gloo through TorchDistributed adds floats in thrifty's ring order: the same bits."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from collective_harness import CONTEXT, run_peers

torch = pytest.importorskip("torch")

WORLD = 3
DTYPES = ("float32", "float64", "float16", "bfloat16")
SIZE = 10_007  # slices of unequal length


def _inputs(rank: int, dtype: str) -> Any:
    import torch

    generator = torch.Generator().manual_seed(17 * rank + DTYPES.index(dtype))
    # Magnitudes spread over decades, so the order of additions shows in the bits.
    values = torch.randn(SIZE, generator=generator, dtype=torch.float64)
    return (values * 10.0 ** torch.randint(-3, 4, (SIZE,), generator=generator)).to(
        getattr(torch, dtype)
    )


def _reduce_all(comm: Any) -> list[bytes]:
    import torch

    # Bytes, not tensors: a tensor sent through a queue lives in shared memory that goes
    # away with the process.
    out = []
    for dtype in DTYPES:
        for op in ("sum", "avg"):
            x = _inputs(comm.rank, dtype)
            comm.all_reduce(x, op=op)
            out.append(x.view(torch.uint8).numpy().tobytes())
    return out


def _thrifty_peer(comm: Any) -> list[bytes]:
    return _reduce_all(comm)


def _gloo_peer(rank: int, port: int, results: Any) -> None:
    import torch.distributed as dist

    from thrifty.collective import TorchDistributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results.put((rank, _reduce_all(TorchDistributed())))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(180)
def test_gloo_sums_floats_bit_for_bit_like_thrifty() -> None:
    ours = run_peers(WORLD, _thrifty_peer)
    results = CONTEXT.Queue()
    port = _free_port()
    processes = [CONTEXT.Process(target=_gloo_peer, args=(r, port, results)) for r in range(WORLD)]
    for p in processes:
        p.start()
    gloo = dict(results.get(timeout=120) for _ in range(WORLD))
    for p in processes:
        p.join(timeout=30)
    naive_differs = False
    for i, x in enumerate(ours[0]):
        for rank in range(WORLD):
            assert ours[rank][i] == x  # every thrifty peer agrees
            assert gloo[rank][i] == x, (i, rank)
        dtype = DTYPES[i // 2]
        stack = torch.stack([_inputs(r, dtype) for r in range(WORLD)])
        naive = stack[2] + stack[1] + stack[0]
        naive = naive if i % 2 == 0 else naive / WORLD
        naive_differs |= naive.view(torch.uint8).numpy().tobytes() != x
    # Otherwise this test could not tell one order from another.
    assert naive_differs


def _gloo_calls(rank: int, port: int, results: Any) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    from thrifty.collective import TorchDistributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        comm = TorchDistributed()
        state = {
            "w": torch.full((3,), float(rank == WORLD - 1), dtype=torch.bfloat16),
            "step": np.array([7], dtype=np.int64),
        }
        first = comm.sync_state(state)
        second = comm.sync_state(state)  # revision=None: the next one
        p = torch.full((4,), float(rank))
        group = comm.pair_average(p, 3)
        gathered = comm.all_gather(np.array([rank, -rank], dtype=np.int32))
        b = torch.full((2,), float(rank), dtype=torch.bfloat16)
        comm.broadcast(b, WORLD - 1)
        results.put(
            (
                rank,
                {
                    "w": state["w"].float().tolist(),
                    "fetched": (first.fetched, second.fetched),
                    "revisions": (first.revision, second.revision),
                    "pair": (group, p.tolist()),
                    "gathered": gathered.tolist(),
                    "broadcast": b.float().tolist(),
                },
            )
        )
    except BaseException as error:
        results.put((rank, repr(error)))
        raise
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_torch_distributed_calls_over_gloo() -> None:
    from thrifty.collective import pairing_groups

    results = CONTEXT.Queue()
    port = _free_port()
    processes = [CONTEXT.Process(target=_gloo_calls, args=(r, port, results)) for r in range(WORLD)]
    for p in processes:
        p.start()
    out = dict(results.get(timeout=90) for _ in range(WORLD))
    for p in processes:
        p.join(timeout=30)
    groups = pairing_groups(WORLD, 3, 2)
    for rank, value in out.items():
        assert isinstance(value, dict), value
        assert value["w"] == [0.0, 0.0, 0.0]  # the most common state wins
        assert value["fetched"] == ((["w"] if rank == WORLD - 1 else []), [])
        assert value["revisions"] == (0, 1)
        group, averaged = value["pair"]
        assert group in groups
        assert rank in group
        assert averaged == [sum(group) / len(group)] * 4
        assert value["gathered"] == [[r, -r] for r in range(WORLD)]
        assert value["broadcast"] == [WORLD - 1.0] * 2
