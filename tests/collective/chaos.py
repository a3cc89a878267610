"""Chaos harness: peers are SIGKILLed at random while the others loop over all-reduces.

For a bounded time it keeps ``peers`` processes running against one coordinator, kills one
at random every few hundred milliseconds and starts a replacement, which joins through
``update_topology()`` and ``sync_state()``. Every peer checks every collective it runs:

- a completed all-reduce must equal the exact sum over the members that took part (the
  inputs are small integers, so float32 sums are exact and any error shows);
- a failed call must leave its input buffer exactly as it was;
- nothing may hang: every call has a deadline, and the harness bounds every join.

``run(duration_s=30)`` returns a :class:`ChaosReport`; ``test_chaos.py`` runs a short one,
and ``make soak`` a long one. By hand, from the repository root::

    python tests/collective/chaos.py --duration 60 --peers 4
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thrifty._progress import progress_bar

_SECRET = "thrifty-chaos"


@dataclass
class ChaosReport:
    """What a chaos run saw, summed over every peer process."""

    duration_s: float
    kills: int
    joins: int
    completed: int
    failed_and_restored: int
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No wrong result, no unrestored buffer, no hang, and real progress."""
        return not self.violations and self.completed > 0


def _contribution(tag: int, iteration: int, size: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    index = np.arange(size, dtype=np.int64)
    return ((tag * 31 + index * 7 + iteration) % 1000).astype(np.float32)


def _peer_main(
    address: str,
    tag: int,
    size: int,
    timeout_s: float,
    reports: Any,
    stop: Any,
    shared_memory: bool,
) -> None:
    # `reports` is this peer's own end of a pipe to the harness: a peer killed in the middle
    # of a report can only spoil its own pipe. (One queue shared by all peers hung them at
    # exit: a peer killed while holding the queue's write lock kept it taken for ever, and
    # every other peer's feeder thread, which a process joins at exit, waited on it.)
    # Imported here: a spawned child starts from a clean interpreter.
    from thrifty import collective

    completed = restored = 0
    violations: list[str] = []

    def report() -> None:
        reports.send((os.getpid(), completed, restored, violations[:]))

    try:
        comm = collective.Communicator(
            address,
            secret=_SECRET,
            timeout_s=timeout_s,
            connections=2,
            shared_memory=shared_memory,
        )
        comm.connect()
    except collective.CollectiveError as error:
        violations.append(f"tag {tag}: connect failed: {error}")
        report()
        return
    iteration = np.zeros(1, dtype=np.int64)
    revision = 0
    while not stop.value:
        try:
            comm.update_topology()
            synced = comm.sync_state({"iteration": iteration}, revision)
            revision = synced.revision + 1
            tags = comm.all_gather_scalars([float(tag)])[:, 0].astype(np.int64)
            for _ in range(5):
                step = int(iteration[0])
                x = _contribution(tag, step, size)
                original = x.copy()
                try:
                    comm.all_reduce(x)
                except (collective.PeerLost, collective.CollectiveTimeout):
                    if not np.array_equal(x, original):
                        violations.append(f"tag {tag}: a failed all_reduce changed its buffer")
                    restored += 1
                    raise
                expected = sum(_contribution(int(t), step, size) for t in tags)
                if not np.array_equal(x, expected):
                    violations.append(
                        f"tag {tag}: wrong all_reduce at iteration {step} (world {comm.world_size})"
                    )
                completed += 1
                iteration += 1
            report()
        except (collective.PeerLost, collective.CollectiveTimeout):
            continue
        except collective.CollectiveError as error:
            violations.append(f"tag {tag}: {type(error).__name__}: {error}")
            break
    report()
    reports.close()
    comm.close()


def run(
    duration_s: float = 30.0,
    *,
    peers: int = 4,
    size: int = 20_000,
    kill_interval_s: tuple[float, float] = (0.3, 1.5),
    timeout_s: float = 10.0,
    seed: int = 0,
    progress: bool = True,
    shared_memory: bool = False,
) -> ChaosReport:
    """Run the harness for ``duration_s`` seconds; see the module docstring."""
    from thrifty import collective

    rng = random.Random(seed)
    context = mp.get_context("spawn")
    # The harness's end of each peer's report pipe; a pipe whose peer has exited and that
    # holds nothing more reads as EOF and is dropped.
    pipes: list[Any] = []
    # A flag without a lock: an Event's lock, taken by a peer SIGKILLed inside is_set(),
    # would stay taken, and every other peer (and the final set()) would wait on it forever.
    stop = context.RawValue("b", 0)
    totals: dict[int, tuple[int, int, list[str]]] = {}
    violations: list[str] = []
    kills = joins = 0

    def drain() -> None:
        for pipe in pipes[:]:
            try:
                while pipe.poll():
                    pid, completed, restored, seen = pipe.recv()
                    totals[pid] = (completed, restored, seen)
            except (EOFError, OSError, pickle.UnpicklingError):
                # The peer exited, or was killed in the middle of a report: its last whole
                # report is in `totals` already.
                pipe.close()
                pipes.remove(pipe)

    with collective.Coordinator(secret=_SECRET) as coordinator:

        def start() -> Any:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_peer_main,
                args=(
                    coordinator.address,
                    rng.randrange(1000),
                    size,
                    timeout_s,
                    send,
                    stop,
                    shared_memory,
                ),
                daemon=True,
            )
            process.start()
            # Only the peer may hold the sending end, so that its exit closes the pipe.
            send.close()
            pipes.append(receive)
            return process

        alive = [start() for _ in range(peers)]
        started = time.monotonic()
        bar = progress_bar(int(duration_s), "chaos", progress)
        shown = 0
        next_kill = started + 2.0 + rng.uniform(*kill_interval_s)
        while (now := time.monotonic()) - started < duration_s:
            time.sleep(0.05)
            drain()
            if int(now - started) > shown:
                bar.update(int(now - started) - shown)
                shown = int(now - started)
            if now >= next_kill and alive:
                victim = alive.pop(rng.randrange(len(alive)))
                if victim.pid is not None:
                    os.kill(victim.pid, signal.SIGKILL)
                victim.join(timeout=5)
                kills += 1
                alive.append(start())
                joins += 1
                next_kill = now + rng.uniform(*kill_interval_s)
        bar.close()
        stop.value = 1
        # A survivor may be inside a call whose peers were just killed: allow its deadline.
        # Reports are drained while waiting, so that no peer blocks on a full pipe.
        limit = time.monotonic() + 2 * timeout_s + 10
        while any(process.is_alive() for process in alive) and time.monotonic() < limit:
            drain()
            time.sleep(0.05)
        for process in alive:
            if process.is_alive():
                violations.append(f"peer pid {process.pid} hung after the run was stopped")
                process.kill()
            process.join(timeout=5)
        drain()
        for pipe in pipes:
            pipe.close()
    completed = sum(c for c, _, _ in totals.values())
    restored = sum(r for _, r, _ in totals.values())
    for _, _, seen in totals.values():
        violations.extend(seen)
    return ChaosReport(
        duration_s=duration_s,
        kills=kills,
        joins=joins,
        completed=completed,
        failed_and_restored=restored,
        violations=violations,
    )


def main(argv: list[str] | None = None) -> int:
    """``python tests/collective/chaos.py [--duration S] [--peers N] [--seed N] [--json]``."""
    import argparse
    import json
    from dataclasses import asdict

    parser = argparse.ArgumentParser(prog="python tests/collective/chaos.py")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--shm", action="store_true", help="links through shared memory")
    args = parser.parse_args(argv)
    report = run(
        args.duration,
        peers=args.peers,
        seed=args.seed,
        progress=not args.json,
        shared_memory=args.shm,
    )
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        print(
            f"{report.duration_s:.0f} s, {report.kills} kills, {report.joins} joins: "
            f"{report.completed} all-reduces correct, {report.failed_and_restored} failed "
            f"and restored, {len(report.violations)} violations"
        )
        for line in report.violations[:20]:
            print("  " + line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
