"""No single point of failure: peers lose their coordinator and go on with a standby."""

from __future__ import annotations

import queue
import time
from typing import Any

import numpy as np
import pytest
from collective_harness import CONTEXT, SECRET

from thrifty import collective
from thrifty.errors import InvalidArgumentError


def _peer(addresses: list[str], world: int, ready: Any, go: Any, results: Any) -> None:
    try:
        with collective.Communicator(
            addresses, secret=SECRET, bind_host="127.0.0.1", timeout_s=20.0, connections=2
        ) as comm:
            comm.connect()
            while comm.world_size < world:
                comm.update_topology()
            first_epoch = comm.epoch
            x = np.ones(50_001, dtype=np.float32)
            comm.all_reduce(x)
            ready.put(comm.rank)
            go.wait(30)
            y = np.arange(50_001, dtype=np.float64) * (comm.rank + 1)
            original = y.copy()
            try:
                comm.all_reduce(y)
                lost = False
            except collective.PeerLost:
                lost = bool(np.array_equal(y, original))
            comm.update_topology()
            y = np.arange(50_001, dtype=np.float64) * (comm.rank + 1)
            comm.all_reduce(y)
            expected = np.arange(50_001, dtype=np.float64) * sum(range(1, world + 1))
            results.put(
                {
                    "first": float(x[0]),
                    "lost_and_restored": lost,
                    "world": comm.world_size,
                    "newer_epoch": comm.epoch > first_epoch,
                    "correct": bool(np.array_equal(y, expected)),
                }
            )
    except BaseException as error:  # the test reports what went wrong in the peer
        results.put({"error": repr(error)})


@pytest.mark.timeout(120)
def test_peers_resume_on_the_standby_when_the_coordinator_dies() -> None:
    world = 3
    with collective.Coordinator(secret=SECRET) as standby:
        primary = collective.Coordinator(secret=SECRET)
        addresses = [primary.address, standby.address]
        ready, results, go = CONTEXT.Queue(), CONTEXT.Queue(), CONTEXT.Event()
        peers = [
            CONTEXT.Process(target=_peer, args=(addresses, world, ready, go, results))
            for _ in range(world)
        ]
        for p in peers:
            p.start()
        try:
            assert sorted(ready.get(timeout=60) for _ in peers) == list(range(world))
            primary.close()  # the coordinator dies between two all-reduces
            go.set()
            outcomes = [results.get(timeout=60) for _ in peers]
        except queue.Empty:
            pytest.fail("a peer did not report in time")
        finally:
            for p in peers:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
        assert standby.snapshot().members != ()
    for outcome in outcomes:
        assert "error" not in outcome, outcome
        assert outcome["first"] == world
        assert outcome["lost_and_restored"]
        assert outcome["world"] == world
        assert outcome["newer_epoch"]
        assert outcome["correct"]


def test_coordinator_lists_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="coordinator"):
        collective.Communicator([], secret=SECRET)
    with pytest.raises(InvalidArgumentError, match="list of addresses"):
        collective.Communicator("a:1,b:2", secret=SECRET)
    with pytest.raises(InvalidArgumentError, match="coordinator"):
        collective.Communicator(["a:1", ""], secret=SECRET)


def test_a_coordinator_without_a_world_sends_newcomers_to_the_fellow_that_has_one() -> None:
    with (
        collective.Coordinator(secret=SECRET) as leader,
        collective.Communicator(leader, secret=SECRET, bind_host="127.0.0.1") as member,
    ):
        member.connect()
        member.update_topology()
        assert member.world_size == 1
        # A restarted primary, told of the standby the world moved to.
        with (
            collective.Coordinator(secret=SECRET, fellows=[leader.address]) as idle,
            collective.Communicator(idle, secret=SECRET, bind_host="127.0.0.1") as newcomer,
        ):
            newcomer.connect()
            deadline = time.monotonic() + 10
            while newcomer.id not in leader.snapshot().pending:
                assert time.monotonic() < deadline, leader.snapshot()
                time.sleep(0.01)
            assert idle.snapshot().pending == ()


def test_fellows_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="fellows"):
        collective.Coordinator(secret=SECRET, fellows="a:1")
    with pytest.raises(InvalidArgumentError, match="fellows"):
        collective.Coordinator(secret=SECRET, fellows=[""])
