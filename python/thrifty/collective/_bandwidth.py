"""All-reduce bandwidth of thrifty.collective on this machine: ``thrifty bench allreduce``.

A user's own network check, reported as nccl-tests reports it: ``world`` processes on
127.0.0.1 (spawned), each holding one communicator, run ``iters`` all-reduces of a float32
array after a barrier. The time of an all-reduce is the slowest rank's mean, and

- ``algbw = bytes / time``;
- ``busbw = algbw * 2 (n - 1) / n``, the per-link traffic of a ring, comparable across n.

For quantized runs the bandwidths count the fp32 bytes (the effective bandwidth), and
``wire_bytes`` is what each rank really sent per all-reduce, headers included.

The peers serve commands through :func:`serve`, which takes the backend's all-reduce as a
function: the benchmarks run a baseline's peers through it too, so that both sides are
timed by the same loop.

Examples
--------
>>> from thrifty.collective._bandwidth import parse_size, record
>>> parse_size("64MB"), parse_size("512KiB")
(67108864, 524288)
>>> r = record("thrifty", 4, 1 << 30, None, seconds=1.0, wire=0)
>>> round(r.algbw_gbps, 3), round(r.busbw_gbps, 3)  # busbw = algbw * 2 (4 - 1) / 4
(1.074, 1.611)
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from thrifty._checks import check_int
from thrifty._plot import figure
from thrifty.errors import InvalidArgumentError

QUANTIZATIONS: tuple[str | None, ...] = (None, "int8", "fp8", "fp4")
_SECRET = "thrifty-bench"


@dataclass(frozen=True)
class BandwidthRecord:
    """One (backend, world, size, quantization) measurement.

    ``wire_bytes`` is None for a backend that does not say what it sent.
    """

    backend: str
    world: int
    size_bytes: int
    quantize: str | None
    seconds: float
    algbw_gbps: float
    busbw_gbps: float
    wire_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_size(text: str) -> int:
    """``"64MB"``, ``"1MiB"``, ``"512KB"`` or a plain byte count; MB means MiB, as in nccl-tests."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", text)
    if match is None:
        raise InvalidArgumentError(f"size must look like 64MB or 1048576, got {text!r}", "size")
    unit = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(match.group(1)) * unit


def record(
    backend: str,
    world: int,
    size: int,
    quantize: str | None,
    *,
    seconds: float,
    wire: int | None,
) -> BandwidthRecord:
    """The bandwidths of ``size`` bytes all-reduced in ``seconds`` by ``world`` ranks."""
    algbw = size / seconds / 1e9
    return BandwidthRecord(
        backend=backend,
        world=world,
        size_bytes=size,
        quantize=quantize,
        seconds=seconds,
        algbw_gbps=algbw,
        busbw_gbps=algbw * 2 * (world - 1) / world if world > 1 else algbw,
        wire_bytes=wire,
    )


def serve(
    conn: Any,
    rank: int,
    world: int,
    all_reduce: Callable[[np.ndarray[Any, Any], str | None], int | None],
    barrier: Callable[[], None],
) -> None:
    """Run the parent's commands over ``conn`` until told to stop.

    ``all_reduce(x, quantize)`` sums ``x`` in place over the world and returns the bytes
    this rank sent (None if the backend does not say). Each command times ``iters`` of
    them after a barrier and answers ``(seconds per all-reduce, bytes sent per all-reduce,
    relative error, user CPU seconds, system CPU seconds)``, times per all-reduce, CPU
    times for the whole process (every thread of the backend).
    """
    arrays: dict[int, np.ndarray[Any, np.dtype[np.float32]]] = {}
    conn.send(("ready", rank))
    while True:
        command, size, quantize, iters = conn.recv()
        if command == "stop":
            break
        x = arrays.get(size)
        if x is None:
            x = arrays[size] = np.ones(size // 4, dtype=np.float32)
        barrier()
        cpu = os.times()
        started = time.perf_counter()
        sent: int | None = 0
        for _ in range(iters):
            bytes_sent = all_reduce(x, quantize)
            sent = None if bytes_sent is None or sent is None else sent + bytes_sent
        elapsed = time.perf_counter() - started
        spent = os.times()
        user, system = spent.user - cpu.user, spent.system - cpu.system
        # Every rank started from ones, so the result must be world ** iters everywhere.
        expected = float(world) ** iters
        error = float(np.max(np.abs(x - expected))) / expected if x.size else 0.0
        x.fill(1.0)
        per_call = None if sent is None else sent // max(iters, 1)
        conn.send((elapsed / iters, per_call, error, user / iters, system / iters))
    conn.send(("stopped", rank))


def _thrifty_peer(
    rank: int,
    world: int,
    address: str,
    conn: Any,
    *,
    bind_host: str = "127.0.0.1",
    shared_memory: bool = False,
) -> None:
    """One thrifty peer serving the command loop; ``bind_host`` is where it listens for the
    other peers (every interface when they sit in other network namespaces), and
    ``shared_memory`` whether its links to peers on this machine may bypass TCP."""
    from thrifty import collective

    comm = collective.Communicator(
        address, secret=_SECRET, bind_host=bind_host, shared_memory=shared_memory
    )
    comm.connect()
    while comm.world_size < world:
        comm.update_topology()

    def all_reduce(x: np.ndarray[Any, Any], quantize: str | None) -> int:
        comm.all_reduce(x, quantize=quantize)
        return int(comm.last_stats.bytes_sent)

    try:
        serve(conn, rank, world, all_reduce, comm.barrier)
    finally:
        comm.close()


class PeerPool:
    """``world`` spawned processes, each holding a communicator, driven by commands.

    Subclasses start another backend's peers: they set :attr:`backend` and pass their
    peer function and address to :meth:`_start`. ``shared_memory=True`` lets links go
    through shared memory (the backend is then called ``thrifty-shm``).
    """

    backend = "thrifty"

    def __init__(self, world: int, *, shared_memory: bool = False) -> None:
        from thrifty import collective

        self.world = check_int(world, "world", minimum=1)
        if shared_memory:
            self.backend = "thrifty-shm"
        self._coordinator: Any = collective.Coordinator(secret=_SECRET)
        peer = functools.partial(_thrifty_peer, shared_memory=shared_memory)
        self._start(peer, self._coordinator.address)

    def _start(self, peer: Callable[[int, int, str, Any], None], address: str) -> None:
        """Spawn one ``peer(rank, world, address, conn)`` per rank; wait until all serve."""
        context = mp.get_context("spawn")
        self._conns: list[Any] = []
        self._processes: list[Any] = []
        for rank in range(self.world):
            parent, child = context.Pipe()
            process = context.Process(
                target=peer, args=(rank, self.world, address, child), daemon=True
            )
            process.start()
            self._conns.append(parent)
            self._processes.append(process)
        for conn in self._conns:
            if not conn.poll(120):
                self.close()
                raise TimeoutError(f"{self.backend} peers did not start within 120 s")
            conn.recv()

    def run(
        self, size_bytes: int, *, quantize: str | None = None, iters: int = 1
    ) -> tuple[float, int | None]:
        """Run ``iters`` all-reduces of ``size_bytes``; the slowest rank's mean time, and the
        bytes rank 0 sent per all-reduce. Raises if any rank's result is wrong."""
        for conn in self._conns:
            conn.send(("run", size_bytes, quantize, iters))
        results = [conn.recv() for conn in self._conns]
        worst = max(r[2] for r in results)
        if worst > 1e-3:
            raise AssertionError(f"{self.backend} all_reduce gave a relative error of {worst:.2e}")
        #: The mean over ranks of the (user, system) CPU seconds one all-reduce took in the
        #: last :meth:`run`.
        self.last_cpu = (
            sum(r[3] for r in results) / len(results),
            sum(r[4] for r in results) / len(results),
        )
        return max(r[0] for r in results), results[0][1]

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("stop", 0, None, 0))
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        coordinator = getattr(self, "_coordinator", None)
        if coordinator is not None:
            coordinator.close()

    def __enter__(self) -> PeerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep(
    pool: PeerPool,
    *,
    sizes: Sequence[int],
    quantizations: Sequence[str | None],
    iters: int,
    progress: bool,
) -> list[BandwidthRecord]:
    """Measure every (size, quantization) on ``pool``, each after one untimed warm-up."""
    from thrifty._progress import progress_bar

    records = []
    bar = progress_bar(
        len(sizes) * len(quantizations), f"{pool.backend} world {pool.world}", progress
    )
    for size in sizes:
        for quantize in quantizations:
            pool.run(size, quantize=quantize, iters=1)  # warm-up: buffers, pages
            seconds, wire = pool.run(size, quantize=quantize, iters=iters)
            records.append(
                record(pool.backend, pool.world, size, quantize, seconds=seconds, wire=wire)
            )
            bar.update(1)
    bar.close()
    return records


def all_reduce_bandwidth(
    *,
    world: int,
    sizes: Sequence[int],
    quantizations: Sequence[str | None] = QUANTIZATIONS,
    iters: int = 5,
    progress: bool = True,
) -> list[BandwidthRecord]:
    """thrifty's all-reduce bandwidth for every size and quantization (None: fp32)."""
    iters = check_int(iters, "iters", minimum=1)
    with PeerPool(world) as pool:
        return sweep(pool, sizes=sizes, quantizations=quantizations, iters=iters, progress=progress)


def format_table(records: Sequence[BandwidthRecord]) -> str:
    """One line per record: time, algbw, busbw and the bytes on the wire (``-``: unknown)."""
    lines = [
        f"{'backend':<11} {'quant':<5} {'world':>5} {'size':>9} {'time ms':>9} "
        f"{'algbw GB/s':>10} {'busbw GB/s':>10} {'wire MB':>8}"
    ]
    for r in records:
        wire = "-" if r.wire_bytes is None else f"{r.wire_bytes / 1e6:.2f}"
        lines.append(
            f"{r.backend:<11} {r.quantize or '-':<5} {r.world:>5} "
            f"{r.size_bytes / (1 << 20):>7.0f}MB {r.seconds * 1e3:>9.2f} "
            f"{r.algbw_gbps:>10.3f} {r.busbw_gbps:>10.3f} {wire:>8}"
        )
    return "\n".join(lines)


def plot(records: Sequence[BandwidthRecord], path: str) -> None:
    """Bus bandwidth against size, one line per backend and quantization."""
    with figure(path, size=(7, 4.5)) as ax:
        keys = sorted({(r.backend, r.quantize or "fp32", r.world) for r in records})
        for backend, quantize, world in keys:
            rows = [
                r
                for r in records
                if (r.backend, r.quantize or "fp32", r.world) == (backend, quantize, world)
            ]
            ax.plot(
                [r.size_bytes / (1 << 20) for r in rows],
                [r.busbw_gbps for r in rows],
                marker="o",
                label=f"{backend} {quantize} (n={world})",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("array size (MiB of float32)")
        ax.set_ylabel("bus bandwidth (GB/s, fp32 bytes)")
        ax.set_title("all-reduce on 127.0.0.1")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
