"""A new peer joins a running world: update_topology, then sync_state, then it takes part."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from collective_harness import World

from thrifty import collective

JOINED_STEPS = 3


def _step(comm: Any, state: dict[str, np.ndarray[Any, Any]], step: int) -> tuple[int, float]:
    """One training step: every member adds the same all-reduced update to its weights."""
    x = np.full(16, 1.0, dtype=np.float32)
    comm.all_reduce(x)
    update = np.arange(state["weights"].size, dtype=np.float32).reshape(state["weights"].shape)
    state["weights"] += update * np.float32(step % 5) / np.float32(x[0])
    state["step"][0] = step + 1
    return comm.world_size, float(x[0])


def _train(comm: Any, state: dict[str, Any], revision: int, events: Any | None) -> dict[str, Any]:
    history = []
    joined = 0
    first = True
    while joined < JOINED_STEPS and revision < 2000:
        if not first:
            comm.update_topology()
            comm.sync_state(state, revision)
        first = False
        world, value = _step(comm, state, revision)
        history.append((revision, world, value))
        if world == 3:
            joined += 1
        elif events is not None and revision == 3 and comm.rank == 0:
            events.put(("running", revision))
        if world < 3:
            time.sleep(0.02)  # the newcomer is starting: no need to spin
        revision += 1
    return {
        "history": history,
        "hash": collective.state_hash(state["weights"]),
        "step": int(state["step"][0]),
    }


def _fresh_state() -> dict[str, np.ndarray[Any, Any]]:
    return {"weights": np.zeros((40, 25), dtype=np.float32), "step": np.zeros(1, dtype=np.int64)}


def _member(comm: Any, events: Any) -> dict[str, Any]:
    state = _fresh_state()
    comm.sync_state(state, 0)
    return _train(comm, state, 0, events)


def _newcomer(comm: Any) -> dict[str, Any]:
    state = _fresh_state()
    state["weights"] += 7  # different data under the same names: it must be replaced
    comm.update_topology()  # admitted at the members' next vote
    report = comm.sync_state(state, 0)  # a first sync takes any revision
    result = _train(comm, state, report.revision, None)
    result["report"] = report
    return result


@pytest.mark.timeout(120)
def test_newcomer_gets_the_state_and_takes_part_in_the_next_all_reduce() -> None:
    with World() as world:
        for _ in range(2):
            world.spawn(_member, world.events, world=2)
        assert world.event()[0] == "running"
        world.spawn(_newcomer)
        results = world.results(3)
    newcomer = next(r for r in results if "report" in r.value)
    members = [r for r in results if "report" not in r.value]
    report = newcomer.value["report"]
    assert report.fetched == ("step", "weights")
    assert report.world_size == 3
    assert report.peers_out_of_date == 1
    joined_at = report.revision
    assert joined_at > 3
    # bit-identical state everywhere, and the same history from the join on
    assert {r.value["hash"] for r in results} == {newcomer.value["hash"]}
    assert {r.value["step"] for r in results} == {joined_at + JOINED_STEPS}
    assert newcomer.value["history"] == [(joined_at + i, 3, 3.0) for i in range(JOINED_STEPS)]
    for member in members:
        history = member.value["history"]
        assert history[-JOINED_STEPS:] == newcomer.value["history"]
        assert all(world == 2 and value == 2.0 for _, world, value in history[:-JOINED_STEPS])
