"""All-reduce bandwidth of thrifty.collective beside torch.distributed Gloo, in one run.

Both backends run the same way: ``world`` processes on 127.0.0.1 (spawned), each holding
one communicator, run ``iters`` all-reduces of a float32 array after a barrier. The time of
an all-reduce is the slowest rank's mean, as nccl-tests reports it, and

- ``algbw = bytes / time``;
- ``busbw = algbw * 2 (n - 1) / n``, the per-link traffic of a ring, comparable across n.

For quantized runs the bandwidths count the fp32 bytes (the effective bandwidth), and
``wire_bytes`` is what each rank really sent per all-reduce, headers included.

Examples
--------
>>> from thrifty.collective import bench
>>> bench.parse_size("64MB"), bench.parse_size("512KiB")
(67108864, 524288)
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import re
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from thrifty._plot import figure
from thrifty.errors import InvalidArgumentError

BACKENDS = ("thrifty", "gloo")
_SECRET = "thrifty-bench"


@dataclass(frozen=True)
class BenchRecord:
    """One (backend, world, size, quantization) measurement."""

    backend: str
    world: int
    size_bytes: int
    quantize: str | None
    seconds: float
    algbw_gbps: float
    busbw_gbps: float
    wire_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_size(text: str) -> int:
    """``"64MB"``, ``"1MiB"``, ``"512KB"`` or a plain byte count; MB means MiB, as in nccl-tests."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", text)
    if match is None:
        raise InvalidArgumentError(f"size must look like 64MB or 1048576, got {text!r}", "size")
    unit = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(match.group(1)) * unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(backend: str, rank: int, world: int, address: str, conn: Any) -> None:
    """Serve commands from the parent over ``conn`` until told to stop."""
    arrays: dict[int, np.ndarray[Any, np.dtype[np.float32]]] = {}
    if backend == "gloo":
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://{address}", rank=rank, world_size=world)

        def all_reduce(x: np.ndarray[Any, Any], quantize: str | None) -> int:
            del quantize
            dist.all_reduce(torch.from_numpy(x))
            return 0

        def barrier() -> None:
            dist.barrier()

        def close() -> None:
            dist.destroy_process_group()
    else:
        from thrifty import collective

        comm = collective.Communicator(address, secret=_SECRET, bind_host="127.0.0.1")
        comm.connect()
        while comm.world_size < world:
            comm.update_topology()

        def all_reduce(x: np.ndarray[Any, Any], quantize: str | None) -> int:
            comm.all_reduce(x, quantize=quantize)
            return int(comm.last_stats.bytes_sent)

        def barrier() -> None:
            comm.barrier()

        def close() -> None:
            comm.close()

    conn.send(("ready", rank))
    while True:
        command, size, quantize, iters = conn.recv()
        if command == "stop":
            break
        x = arrays.get(size)
        if x is None:
            x = arrays[size] = np.ones(size // 4, dtype=np.float32)
        barrier()
        started = time.perf_counter()
        sent = 0
        for _ in range(iters):
            sent += all_reduce(x, quantize)
        elapsed = time.perf_counter() - started
        # Every rank started from ones, so the result must be world ** iters everywhere.
        expected = float(world) ** iters
        error = float(np.max(np.abs(x - expected))) / expected if x.size else 0.0
        x.fill(1.0)
        conn.send((elapsed / iters, sent // max(iters, 1), error))
    close()
    conn.send(("stopped", rank))


class PeerPool:
    """``world`` processes of one backend, each holding a communicator, driven by commands.

    Used by the benchmarks (one all-reduce per call) and by ``thrifty bench allreduce``.
    """

    def __init__(self, backend: str, world: int) -> None:
        if backend not in BACKENDS:
            raise InvalidArgumentError(
                f"backend must be one of {BACKENDS}, got {backend!r}", "backend"
            )
        if world < 1:
            raise InvalidArgumentError(f"world must be at least 1, got {world}", "world")
        self.backend = backend
        self.world = world
        self._coordinator: Any = None
        if backend == "thrifty":
            from thrifty import collective

            self._coordinator = collective.Coordinator(secret=_SECRET)
            address = self._coordinator.address
        else:
            address = f"127.0.0.1:{_free_port()}"
        context = mp.get_context("spawn")
        self._conns = []
        self._processes = []
        for rank in range(world):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker, args=(backend, rank, world, address, child), daemon=True
            )
            process.start()
            self._conns.append(parent)
            self._processes.append(process)
        for conn in self._conns:
            if not conn.poll(120):
                self.close()
                raise TimeoutError(f"{backend} peers did not start within 120 s")
            conn.recv()

    def run(
        self, size_bytes: int, *, quantize: str | None = None, iters: int = 1
    ) -> tuple[float, int]:
        """Run ``iters`` all-reduces of ``size_bytes``; the slowest rank's mean time, and the
        bytes rank 0 sent per all-reduce. Raises if any rank's result is wrong."""
        for conn in self._conns:
            conn.send(("run", size_bytes, quantize, iters))
        results = [conn.recv() for conn in self._conns]
        worst = max(r[2] for r in results)
        if worst > 1e-3:
            raise AssertionError(f"{self.backend} all_reduce gave a relative error of {worst:.2e}")
        return max(r[0] for r in results), int(results[0][1])

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("stop", 0, None, 0))
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        if self._coordinator is not None:
            self._coordinator.close()

    def __enter__(self) -> PeerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record(
    backend: str, world: int, size: int, quantize: str | None, seconds: float, wire: int
) -> BenchRecord:
    algbw = size / seconds / 1e9
    return BenchRecord(
        backend=backend,
        world=world,
        size_bytes=size,
        quantize=quantize,
        seconds=seconds,
        algbw_gbps=algbw,
        busbw_gbps=algbw * 2 * (world - 1) / world if world > 1 else algbw,
        wire_bytes=wire,
    )


def all_reduce_bandwidth(
    *,
    world: int,
    sizes: list[int],
    quantizations: tuple[str | None, ...] = (None, "int8", "fp8", "fp4"),
    backends: tuple[str, ...] = BACKENDS,
    iters: int = 5,
    progress: bool = True,
) -> list[BenchRecord]:
    """Measure every (backend, size, quantization); Gloo runs unquantized only."""
    from thrifty._progress import progress_bar

    records = []
    for backend in backends:
        kinds = quantizations if backend == "thrifty" else (None,)
        with PeerPool(backend, world) as pool:
            bar = progress_bar(len(sizes) * len(kinds), f"{backend} world {world}", progress)
            for size in sizes:
                for quantize in kinds:
                    pool.run(size, quantize=quantize, iters=1)  # warm-up: buffers, pages
                    seconds, wire = pool.run(size, quantize=quantize, iters=iters)
                    records.append(record(backend, world, size, quantize, seconds, wire))
                    bar.update(1)
            bar.close()
    return records


def format_table(records: list[BenchRecord]) -> str:
    """A table with the ratio of each thrifty row to Gloo at the same world and size."""
    gloo = {(r.world, r.size_bytes): r for r in records if r.backend == "gloo"}
    lines = [
        f"{'backend':<8} {'quant':<5} {'world':>5} {'size':>9} {'time ms':>9} "
        f"{'algbw GB/s':>10} {'busbw GB/s':>10} {'wire MB':>8} {'vs gloo':>8}"
    ]
    for r in records:
        base = gloo.get((r.world, r.size_bytes))
        ratio = f"{r.busbw_gbps / base.busbw_gbps:7.2f}x" if base and r.backend != "gloo" else ""
        # Gloo does not say what it sent.
        wire = "-" if r.backend == "gloo" else f"{r.wire_bytes / 1e6:.2f}"
        lines.append(
            f"{r.backend:<8} {r.quantize or '-':<5} {r.world:>5} "
            f"{r.size_bytes / (1 << 20):>7.0f}MB {r.seconds * 1e3:>9.2f} "
            f"{r.algbw_gbps:>10.3f} {r.busbw_gbps:>10.3f} {wire:>8} {ratio:>8}"
        )
    return "\n".join(lines)


def plot(records: list[BenchRecord], path: str) -> None:
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
