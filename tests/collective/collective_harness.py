"""Real peer processes on 127.0.0.1 against an in-process coordinator (spawn start method).

``run_peers(n, fn, *args)`` is the common case: it starts a coordinator and ``n`` processes,
each of which connects a fresh :class:`~thrifty.collective.Communicator`, calls
``update_topology()`` until the world has ``n`` peers, runs ``fn(comm, *args)`` and sends its
result back through a queue. The results come back ordered by rank; an exception in a peer
fails the test with the peer's traceback. :class:`World` is the same with the steps apart,
for tests that start, kill or add peers at chosen moments.

``fn`` must be a module-level function (spawned children import it by name), and its
arguments picklable (a ``World.events`` queue included).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thrifty import collective

SECRET = "thrifty-collective-tests"
CONTEXT = mp.get_context("spawn")


@dataclass
class PeerResult:
    index: int
    rank: int
    world_size: int
    value: Any


def _peer_main(
    address: str,
    world: int | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    results: Any,
    index: int,
    timeout_s: float,
    secret: str,
    shared_memory: bool,
) -> None:
    try:
        with collective.Communicator(
            address,
            secret=secret,
            bind_host="127.0.0.1",
            timeout_s=timeout_s,
            connections=2,
            shared_memory=shared_memory,
        ) as comm:
            comm.connect()
            if world is not None:
                deadline = time.monotonic() + 2 * timeout_s
                while comm.world_size < world:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the world never reached {world} peers")
                    epoch = comm.epoch
                    comm.update_topology()
                    if comm.epoch == epoch:
                        time.sleep(0.01)  # nobody new yet: let the other peers start
            value = fn(comm, *args)
            results.put(("ok", index, comm.rank, comm.world_size, value))
    except BaseException:
        results.put(("error", index, -1, 0, traceback.format_exc()))


class World:
    """A coordinator in this process and peer processes started on demand."""

    def __init__(
        self,
        *,
        secret: str = SECRET,
        heartbeat_timeout_s: float = 5.0,
        shared_memory: bool = False,
    ) -> None:
        self.secret = secret
        #: Whether the peers' links may go through shared memory (they are on one host).
        self.shared_memory = shared_memory
        self.coordinator = collective.Coordinator(
            "127.0.0.1:0", secret=secret, heartbeat_timeout_s=heartbeat_timeout_s
        )
        self.address = self.coordinator.address
        self._results = CONTEXT.Queue()
        #: A queue peers may report progress through (pass it in ``args``).
        self.events = CONTEXT.Queue()
        self.processes: list[Any] = []

    def spawn(
        self,
        fn: Callable[..., Any],
        *args: Any,
        world: int | None = None,
        timeout_s: float = 20.0,
        secret: str | None = None,
    ) -> Any:
        """Start one peer running ``fn(comm, *args)`` once the world has ``world`` peers
        (``None``: right after ``connect()``). Returns the process."""
        process = CONTEXT.Process(
            target=_peer_main,
            args=(
                self.address,
                world,
                fn,
                args,
                self._results,
                len(self.processes),
                timeout_s,
                secret or self.secret,
                self.shared_memory,
            ),
            daemon=True,
        )
        process.start()
        self.processes.append(process)
        return process

    def kill(self, index: int) -> None:
        """SIGKILL peer ``index`` (no goodbye: its sockets simply vanish)."""
        pid = self.processes[index].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        self.processes[index].join(timeout=10)

    def event(self, timeout_s: float = 60.0) -> Any:
        return self.events.get(timeout=timeout_s)

    def results(self, count: int, timeout_s: float = 90.0) -> list[PeerResult]:
        """``count`` results, ordered by rank (then by index); a peer's error fails here."""
        deadline = time.monotonic() + timeout_s
        out: list[PeerResult] = []
        while len(out) < count:
            left = deadline - time.monotonic()
            try:
                status, index, rank, world_size, value = self._results.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"only {len(out)} of {count} peers answered within {timeout_s} s"
                ) from None
            if status == "error":
                raise AssertionError(f"peer {index} failed:\n{value}")
            out.append(PeerResult(index, rank, world_size, value))
        return sorted(out, key=lambda r: (r.rank, r.index))

    def close(self) -> None:
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        self.coordinator.close()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_peers(
    n: int,
    fn: Callable[..., Any],
    *args: Any,
    timeout_s: float = 20.0,
    wait_s: float = 120.0,
    shared_memory: bool = False,
) -> list[Any]:
    """Run ``fn(comm, *args)`` on ``n`` peers in a world of ``n``; the values, by rank."""
    with World(shared_memory=shared_memory) as world:
        for _ in range(n):
            world.spawn(fn, *args, world=n, timeout_s=timeout_s)
        results = world.results(n, timeout_s=wait_s)
    assert [r.rank for r in results] == list(range(n)), [r.rank for r in results]
    assert all(r.world_size == n for r in results)
    return [r.value for r in results]
