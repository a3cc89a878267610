"""broadcast, all_gather, barrier, all_gather_scalars, pair_average and sync_state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from collective_harness import World, run_peers

from thrifty import collective
from thrifty.errors import CollectiveError, InvalidArgumentError


def _collectives_peer(comm: Any, folder: str) -> dict[str, Any]:
    n, rank = comm.world_size, comm.rank
    out: dict[str, Any] = {"failures": []}
    failures: list[str] = out["failures"]

    # broadcast from every root, several dtypes and shapes
    for root in range(n):
        for dtype, shape in (("float32", (7,)), ("int64", (2, 3)), ("float16", (1001,))):
            x = np.full(shape, rank * 10 + 1, dtype=dtype)
            comm.broadcast(x, root)
            if not np.all(x == root * 10 + 1):
                failures.append(f"broadcast {dtype} root {root}: {x.reshape(-1)[:3]}")

    # all_gather keeps the shape, adds the rank axis, and only reads its input
    for dtype, shape in (("int32", (5,)), ("float64", (3, 4)), ("float16", ())):
        x = (np.arange(int(np.prod(shape))) + 100 * rank).astype(dtype).reshape(shape)
        before = x.copy()
        gathered = comm.all_gather(x)
        expected = np.stack(
            [
                (np.arange(int(np.prod(shape))) + 100 * r).astype(dtype).reshape(shape)
                for r in range(n)
            ]
        )
        if gathered.shape != (n, *shape) or gathered.dtype != x.dtype:
            failures.append(f"all_gather {dtype}: shape {gathered.shape} dtype {gathered.dtype}")
        elif not np.array_equal(gathered, expected) or not np.array_equal(x, before):
            failures.append(f"all_gather {dtype}: wrong values")
    readonly = np.full(4, rank, dtype=np.int64)
    readonly.flags.writeable = False
    if not np.array_equal(comm.all_gather(readonly)[:, 0], np.arange(n)):
        failures.append("all_gather of a read-only array")

    # barrier: every peer leaves a mark before it; after it, every mark is there
    Path(folder, f"mark-{rank}").touch()
    comm.barrier()
    marks = sorted(p.name for p in Path(folder).iterdir())
    if marks != sorted(f"mark-{r}" for r in range(n)):
        failures.append(f"barrier returned before every peer reached it: {marks}")

    # all_gather_scalars: rows by rank
    rows = comm.all_gather_scalars([rank, rank * 0.5, -1.0])
    if rows.dtype != np.float64 or rows.tolist() != [[r, r * 0.5, -1.0] for r in range(n)]:
        failures.append(f"all_gather_scalars: {rows.tolist()}")
    if comm.all_gather_scalars([]).shape != (n, 0):
        failures.append("all_gather_scalars of nothing")

    # Bad arguments are refused before anything is sent: the next collective still works.
    for call, argument in (
        (lambda: comm.broadcast(np.zeros(3), n), "root"),
        (lambda: comm.all_reduce(np.zeros(3), op="mean"), "op"),
        (lambda: comm.all_reduce(np.zeros(3, dtype=np.int32), quantize="int8"), "quantize"),
        (lambda: comm.all_reduce(np.zeros(3), quantize="int8", block=0), "block"),
        (lambda: comm.pair_average(np.zeros(3), 0, group_size=1), "group_size"),
        (lambda: comm.sync_state({"w": np.zeros(3)}, -1), "revision"),
    ):
        try:
            call()
            failures.append(f"no error for a bad {argument}")
        except InvalidArgumentError as error:
            if error.argument != argument:
                failures.append(f"error names {error.argument}, not {argument}")
    x = np.ones(10, dtype=np.float32)
    comm.all_reduce(x)
    if not np.all(x == n):
        failures.append("all_reduce after refused calls")
    out["stats"] = comm.last_stats
    return out


@pytest.mark.timeout(120)
def test_broadcast_all_gather_barrier_scalars(tmp_path: Path) -> None:
    results = run_peers(3, _collectives_peer, str(tmp_path))
    for rank, result in enumerate(results):
        assert result["failures"] == [], f"rank {rank}"
        assert result["stats"].bytes_sent > 0


def _mismatch_peer(comm: Any) -> tuple[str, list[str]]:
    """Peers that call the same collective with different shapes all fail, with their
    buffers untouched; after update_topology() they go on."""
    failures = []
    kind = "none"
    x = np.full(100 + 50 * comm.rank, 1.0 + comm.rank, dtype=np.float32)
    before = x.copy()
    try:
        comm.all_reduce(x)
        failures.append("no error")
    except CollectiveError as error:
        kind = type(error).__name__
        if "differ" not in str(error):
            failures.append(f"the cause is not named: {error}")
        if not np.array_equal(x, before):
            failures.append("buffer changed")
    comm.update_topology()
    y = np.ones(10, dtype=np.float32)
    comm.all_reduce(y)
    if not np.all(y == comm.world_size):
        failures.append("all_reduce after the abort")
    return kind, failures


@pytest.mark.timeout(120)
def test_mismatched_shapes_fail_on_every_peer_and_restore() -> None:
    results = run_peers(2, _mismatch_peer)
    assert [failures for _, failures in results] == [[], []]
    # Not PeerLost: the data phase sees frames of the wrong length and says so, and a rank
    # whose link that peer then dropped learns the same cause from the coordinator.
    assert [kind for kind, _ in results] == ["CollectiveAborted"] * 2


# pair_average --------------------------------------------------------------------------


def _pair_input(rank: int, dtype: str) -> np.ndarray[Any, Any]:
    return (np.arange(13) * 3 + 100 * rank).astype(dtype)


def _pair_peer(comm: Any, steps: int) -> list[tuple[int, list[int], dict[str, Any]]]:
    out = []
    for step in range(steps):
        values = {}
        for dtype in ("float64", "int32"):
            x = _pair_input(comm.rank, dtype)
            group = comm.pair_average(x, step)
            values[dtype] = x
        out.append((step, group, values))
    # Groups finish apart: nobody may leave (which breaks the epoch) until all are done.
    comm.barrier()
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [4, 5])
def test_pair_average_groups_are_consistent_and_average(n: int) -> None:
    steps = 4
    results = run_peers(n, _pair_peer, steps)
    for step in range(steps):
        groups = {rank: results[rank][step][1] for rank in range(n)}
        distinct = sorted({tuple(g) for g in groups.values()})
        assert distinct == sorted(tuple(g) for g in collective.pairing_groups(n, step))
        for rank, group in groups.items():
            assert rank in group
            assert len(group) >= 2
            assert group == sorted(group)
            for partner in group:
                assert groups[partner] == group, f"step {step}: {rank} and {partner} disagree"
            for dtype, x in results[rank][step][2].items():
                inputs = [_pair_input(r, dtype) for r in group]
                total = np.sum(inputs, axis=0, dtype=dtype)
                expected = total / len(group) if dtype == "float64" else total // len(group)
                np.testing.assert_array_equal(x, expected.astype(dtype))
    # the pairing changes with the step
    assert len({tuple(map(tuple, collective.pairing_groups(n, s))) for s in range(8)}) > 1


# sync_state ----------------------------------------------------------------------------


def _state(rank: int, *, stale: bool) -> dict[str, np.ndarray[Any, Any]]:
    seed = 99 if stale else 1
    rng = np.random.default_rng(seed)
    return {
        "weights": rng.standard_normal((30, 7)).astype(np.float32),
        "step": np.array([seed], dtype=np.int64),
        "moments": rng.standard_normal(1001).astype(np.float16),
    }


def _sync_peer(comm: Any) -> dict[str, Any]:
    stale = comm.rank == comm.world_size - 1
    state = _state(comm.rank, stale=stale)
    first = comm.sync_state(state, 5)
    hashes = {name: collective.state_hash(a) for name, a in state.items()}
    second = comm.sync_state(state, 6)
    errors = []
    for revision in (8, 6, 5):
        try:
            comm.sync_state(state, revision)
        except InvalidArgumentError as error:
            errors.append(error.argument)
    third = comm.sync_state(state, 7)
    return {
        "first": first,
        "second": second,
        "third": third,
        "hashes": hashes,
        "errors": errors,
        "equal": all(np.array_equal(state[k], v) for k, v in _state(0, stale=False).items()),
    }


@pytest.mark.timeout(120)
def test_sync_state_fetches_the_popular_state_and_checks_the_revision() -> None:
    n = 3
    results = run_peers(n, _sync_peer)
    for rank, r in enumerate(results):
        stale = rank == n - 1
        first = r["first"]
        assert isinstance(first, collective.SyncReport)
        assert first.revision == 5
        assert first.world_size == n
        assert first.peers_out_of_date == 1
        assert first.fetched == (("moments", "step", "weights") if stale else ())
        assert (first.bytes_received > 0) == stale
        assert all(0 <= source < n - 1 for _, source in first.sources)
        assert first.state_hash == results[0]["first"].state_hash
        assert r["equal"]
        assert r["hashes"] == results[0]["hashes"]
        assert r["second"].fetched == ()
        assert r["second"].peers_out_of_date == 0
        assert r["second"].state_hash == first.state_hash
        assert r["errors"] == ["revision", "revision", "revision"]
        assert r["third"].revision == 7


def _newcomer_revision_peer(comm: Any) -> int:
    # A first sync accepts any revision and adopts the winner's.
    revision = 41 if comm.rank < 2 else 0
    return int(comm.sync_state({"w": np.zeros(3)}, revision).revision)


@pytest.mark.timeout(120)
def test_first_sync_adopts_the_winning_revision() -> None:
    assert run_peers(3, _newcomer_revision_peer) == [41, 41, 41]


def test_world_helper_reports_peer_errors() -> None:
    with World() as world:
        world.spawn(_divide_by_zero, world=1)
        with pytest.raises(AssertionError, match="ZeroDivisionError"):
            world.results(1)


def _divide_by_zero(comm: Any) -> float:
    return 1 / 0
