"""A peer SIGKILLed inside a series of all-reduces: the survivors' buffers come back exactly,
they raise PeerLost, update the topology and finish with the smaller world."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from collective_harness import World

from thrifty import collective


def _input(rank: int, iteration: int, size: int) -> np.ndarray[Any, Any]:
    # Small integers: float32 sums are exact, so any wrong or partial result shows.
    index = np.arange(size, dtype=np.int64)
    return ((rank * 31 + index * 7 + iteration) % 1000).astype(np.float32)


def _looping_peer(comm: Any, events: Any, size: int, after: int) -> dict[str, Any]:
    events.put(("ready", comm.rank, os.getpid()))
    shared_links = comm.shared_memory_links
    lost: list[bool] = []
    failures: list[str] = []
    iteration = completed_after = 0
    while completed_after < after and iteration < 100_000:
        x = _input(comm.rank, iteration, size)
        original = x.copy()
        before = (comm.rank, comm.world_size, comm.epoch)
        try:
            comm.all_reduce(x)
        except collective.PeerLost:
            lost.append(bool(np.array_equal(x, original)))
            comm.update_topology()
            continue
        expected = sum(_input(r, iteration, size) for r in range(comm.world_size))
        if not np.array_equal(x, expected):
            wrong = np.flatnonzero(x != expected)
            failures.append(
                f"iteration {iteration}, world {comm.world_size}, rank {comm.rank}, "
                f"before {before}: wrong sum at {wrong.size} of {size} elements, "
                f"first {wrong[:3].tolist()}: {x[wrong[:3]].tolist()} vs "
                f"{expected[wrong[:3]].tolist()}; lost {lost}"
            )
        iteration += 1
        if iteration == 20 and comm.rank == 0 and not lost:
            events.put(("progress", comm.rank, iteration))
        if lost:
            completed_after += 1
    return {
        "lost": lost,
        "failures": failures,
        "iterations": iteration,
        "shared_links": shared_links,
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shared_memory", [True, False], ids=["shm", "tcp"])
@pytest.mark.parametrize("n", [3, 4])
def test_survivors_of_a_sigkill_restore_update_and_finish(n: int, shared_memory: bool) -> None:
    with World(shared_memory=shared_memory) as world:
        for _ in range(n):
            world.spawn(_looping_peer, world.events, 1 << 18, 5, world=n, timeout_s=20.0)
        pids: dict[int, int] = {}
        while True:
            kind, rank, value = world.event()
            if kind == "ready":
                pids[rank] = value
            elif kind == "progress" and len(pids) == n:
                break
        # Kill the peer holding rank 1 in the middle of the series.
        world.kill(next(i for i, p in enumerate(world.processes) if p.pid == pids[1]))
        results = world.results(n - 1)
    for r in results:
        assert r.world_size == n - 1
        # Two stripes to each other peer, all on one host.
        assert r.value["shared_links"] == (2 * (n - 1) if shared_memory else 0)
        assert r.value["failures"] == []
        # The loss surfaced as PeerLost, with the buffer restored exactly, every time.
        assert r.value["lost"], r.value["lost"]
        assert all(r.value["lost"]), r.value["lost"]
    assert sorted(r.rank for r in results) == list(range(n - 1))
