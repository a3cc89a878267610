"""thrifty.collective's all-reduce beside torch.distributed Gloo, on the same loopback.

Both backends run the same way: ``world`` spawned processes on 127.0.0.1, each holding one
communicator (a Gloo process group for the baseline), serve the parent's commands through
the command loop of ``thrifty bench allreduce`` (:func:`thrifty.collective._bandwidth.serve`),
so that both are timed by the same code. Gloo does not say what it sent: its ``wire_bytes``
is None. :func:`format_table` adds the ratio of each thrifty row's bus bandwidth to Gloo's.

``benches/bench_collective.py`` and ``examples/collective_demo.py`` use it.

Examples
--------
>>> from benches import allreduce_vs_gloo
>>> from thrifty.collective._bandwidth import record
>>> rows = [record("gloo", 2, 1 << 20, None, seconds=2e-3, wire=None),
...         record("thrifty", 2, 1 << 20, None, seconds=1e-3, wire=1 << 20)]
>>> [line.split()[-1] for line in allreduce_vs_gloo.format_table(rows).splitlines()]
['gloo', '-', '2.00x']
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from thrifty._checks import check_choice, check_int
from thrifty.collective._bandwidth import (
    QUANTIZATIONS,
    BandwidthRecord,
    PeerPool,
    serve,
    sweep,
)
from thrifty.collective._bandwidth import format_table as bandwidth_table

BACKENDS = ("thrifty", "gloo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gloo_peer(rank: int, world: int, address: str, conn: Any) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://{address}", rank=rank, world_size=world)

    def all_reduce(x: np.ndarray[Any, Any], quantize: str | None) -> None:
        del quantize  # Gloo has no quantized all-reduce: it runs fp32 only
        dist.all_reduce(torch.from_numpy(x))

    def barrier() -> None:
        dist.barrier()

    try:
        serve(conn, rank, world, all_reduce, barrier)
    finally:
        dist.destroy_process_group()


class GlooPool(PeerPool):
    """``world`` spawned processes in one torch.distributed Gloo group, driven by commands."""

    backend = "gloo"

    def __init__(self, world: int) -> None:
        self.world = check_int(world, "world", minimum=1)
        self._coordinator = None
        self._start(_gloo_peer, f"127.0.0.1:{_free_port()}")


def peer_pool(backend: str, world: int) -> PeerPool:
    """The peers of ``backend`` (one of :data:`BACKENDS`)."""
    if check_choice(backend, "backend", BACKENDS) == "gloo":
        return GlooPool(world)
    return PeerPool(world)


def all_reduce_bandwidth(
    *,
    world: int,
    sizes: Sequence[int],
    quantizations: Sequence[str | None] = QUANTIZATIONS,
    backends: Sequence[str] = BACKENDS,
    iters: int = 5,
    progress: bool = True,
) -> list[BandwidthRecord]:
    """Measure every (backend, size, quantization); Gloo runs unquantized only."""
    iters = check_int(iters, "iters", minimum=1)
    records: list[BandwidthRecord] = []
    for backend in backends:
        kinds = quantizations if backend == "thrifty" else (None,)
        with peer_pool(backend, world) as pool:
            records += sweep(pool, sizes=sizes, quantizations=kinds, iters=iters, progress=progress)
    return records


def format_table(records: Sequence[BandwidthRecord]) -> str:
    """The bandwidth table, with the ratio of each thrifty row's busbw to Gloo's at the
    same world and size."""
    gloo = {(r.world, r.size_bytes): r for r in records if r.backend == "gloo"}
    lines = bandwidth_table(records).splitlines()
    lines[0] += f" {'vs gloo':>8}"
    for row, r in enumerate(records, start=1):
        base = gloo.get((r.world, r.size_bytes))
        ratio = f"{r.busbw_gbps / base.busbw_gbps:7.2f}x" if base and r.backend != "gloo" else ""
        lines[row] += f" {ratio:>8}"
    return "\n".join(lines)
