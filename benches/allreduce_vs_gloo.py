"""thrifty.collective's all-reduce beside torch.distributed Gloo, on the same loopback.

Both backends run the same way: ``world`` spawned processes on 127.0.0.1, each holding one
communicator (a Gloo process group for the baseline), serve the parent's commands through
the command loop of ``thrifty bench allreduce`` (:func:`thrifty.collective._bandwidth.serve`),
so that both are timed by the same code. Gloo does not say what it sent: its ``wire_bytes``
is None. :func:`format_table` adds the ratio of each thrifty row's bus bandwidth to Gloo's.

thrifty runs twice: ``thrifty`` with its defaults, every link on loopback TCP, and
``thrifty-shm`` with ``shared_memory=True``, links through shared memory.

``benches/bench_collective.py`` and ``examples/collective_demo.py`` use it. From the command
line it repeats every cell, interleaving the backends, and prints each one's spread and the
CPU time an all-reduce costs (``python -m benches.allreduce_vs_gloo --help``).

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
    record,
    serve,
    sweep,
)
from thrifty.collective._bandwidth import format_table as bandwidth_table

BACKENDS = ("thrifty", "thrifty-shm", "gloo")


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
    backend = check_choice(backend, "backend", BACKENDS)
    if backend == "gloo":
        return GlooPool(world)
    return PeerPool(world, shared_memory=backend == "thrifty-shm")


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
        kinds = quantizations if backend != "gloo" else (None,)
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


def repeated(
    *,
    worlds: Sequence[int],
    sizes: Sequence[int],
    quantizations: Sequence[str | None],
    backends: Sequence[str] = BACKENDS,
    repeats: int = 5,
    iters: int = 5,
) -> list[dict[str, Any]]:
    """Every (world, backend, size, quantization) ``repeats`` times, the backends taking
    turns within each repeat so that the machine's other load falls on all of them alike.

    One row per measurement: the record's fields, the repeat, and the mean user and system
    CPU seconds per all-reduce of one rank (its whole process).
    """
    repeats = check_int(repeats, "repeats", minimum=1)
    iters = check_int(iters, "iters", minimum=1)
    rows: list[dict[str, Any]] = []
    for world in worlds:
        pools = {backend: peer_pool(backend, world) for backend in backends}
        try:
            for repeat in range(repeats):
                for size in sizes:
                    for backend, pool in pools.items():
                        kinds = quantizations if backend != "gloo" else (None,)
                        for quantize in kinds:
                            if repeat == 0:
                                pool.run(size, quantize=quantize, iters=1)  # warm-up
                            seconds, wire = pool.run(size, quantize=quantize, iters=iters)
                            row = record(
                                backend, world, size, quantize, seconds=seconds, wire=wire
                            ).to_dict()
                            user, system = pool.last_cpu
                            row.update(repeat=repeat, user_s=user, system_s=system)
                            rows.append(row)
        finally:
            for pool in pools.values():
                pool.close()
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> str:
    """Per cell: the median busbw with its min and max over the repeats, the ratio of the
    medians to Gloo's, and the median user and system CPU milliseconds per all-reduce."""
    cells: dict[tuple[int, int, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["world"], row["size_bytes"], row["backend"], row["quantize"] or "fp32")
        cells.setdefault(key, []).append(row)

    def median(values: list[float]) -> float:
        return float(np.median(values))

    head = f"{'world':>5} {'size':>6} {'backend':<11} {'quant':<5}"
    lines = [
        f"{head} {'busbw GB/s median [min, max]':>30} {'vs gloo':>8} {'user ms':>8} "
        f"{'sys ms':>8} {'n':>3}"
    ]
    for (world, size, backend, quantize), cell in sorted(cells.items()):
        busbw = [r["busbw_gbps"] for r in cell]
        gloo = cells.get((world, size, "gloo", "fp32"))
        ratio = (
            f"{median(busbw) / median([r['busbw_gbps'] for r in gloo]):7.2f}x"
            if gloo and backend != "gloo"
            else ""
        )
        spread = f"{median(busbw):6.3f} [{min(busbw):6.3f}, {max(busbw):6.3f}]"
        lines.append(
            f"{world:>5} {size >> 20:>4}MB {backend:<11} {quantize:<5} {spread:>30} {ratio:>8}"
            f" {median([r['user_s'] for r in cell]) * 1e3:>8.1f}"
            f" {median([r['system_s'] for r in cell]) * 1e3:>8.1f} {len(cell):>3}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import json

    from thrifty.collective._bandwidth import parse_size

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--world", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--size", nargs="+", default=["16MB", "64MB"])
    parser.add_argument("--quantize", nargs="+", default=["none", "int8"])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--json", help="also write every measurement to this file")
    args = parser.parse_args(argv)
    rows = repeated(
        worlds=args.world,
        sizes=[parse_size(s) for s in args.size],
        quantizations=[None if q == "none" else q for q in args.quantize],
        backends=args.backends,
        repeats=args.repeats,
        iters=args.iters,
    )
    print(summarize(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
