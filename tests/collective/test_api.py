"""The Python API in one process (a world of one): arguments, errors, types, lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import thrifty
from thrifty import collective
from thrifty.errors import DTypeError, InvalidArgumentError, ThriftyError

SECRET = "api-tests"


@pytest.fixture(scope="module")
def coordinator() -> Iterator[collective.Coordinator]:
    with collective.Coordinator(secret=SECRET) as c:
        yield c


@pytest.fixture
def comm(coordinator: collective.Coordinator) -> Iterator[collective.Communicator]:
    with collective.Communicator(coordinator, secret=SECRET, bind_host="127.0.0.1") as c:
        c.connect()
        while c.world_size < 1:
            c.update_topology()
        yield c


def test_lazy_core_and_exports() -> None:
    assert thrifty.collective is collective
    for name in ("PeerLost", "AuthenticationError", "CollectiveTimeout", "CollectiveAborted"):
        error = getattr(collective, name)
        assert issubclass(error, collective.CollectiveError)
        assert issubclass(error, ThriftyError)


def test_membership_and_stats(comm: collective.Communicator, coordinator: Any) -> None:
    assert (comm.rank, comm.world_size) == (0, 1)
    assert comm.epoch >= 1
    snapshot = coordinator.snapshot()
    assert snapshot.members == (comm.id,)
    assert snapshot.epoch == comm.epoch
    x = np.arange(10, dtype=np.float64)
    comm.all_reduce(x, op="max")
    assert x.tolist() == list(range(10))
    assert isinstance(comm.last_stats, collective.OpStats)
    assert comm.last_stats.seconds >= 0
    assert "rank=0" in repr(comm)


def test_world_of_one_collectives(comm: collective.Communicator) -> None:
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    comm.broadcast(x, 0)
    assert comm.all_gather(x).shape == (1, 2, 3)
    comm.barrier()
    assert comm.all_gather_scalars(np.array([1.5, 2.5])).tolist() == [[1.5, 2.5]]
    assert comm.pair_average(x, step=3) == [0]
    report = comm.sync_state({"x": x}, 0)
    assert report.world_size == 1
    assert report.fetched == ()
    assert len(report.state_hash) == 32
    handle = comm.all_reduce_async(np.ones(4, dtype=np.float16), op="avg")
    assert isinstance(handle.wait(), collective.OpStats)
    assert handle.done()


def test_no_topology_yet(coordinator: collective.Coordinator) -> None:
    with collective.Communicator(coordinator.address, secret=SECRET) as comm:
        assert (comm.rank, comm.world_size, comm.epoch) == (-1, 0, 0)
        with pytest.raises(InvalidArgumentError, match="connect") as error:
            comm.all_reduce(np.zeros(3))
        assert error.value.argument == "communicator"
        comm.connect()
        with pytest.raises(collective.PeerLost, match="update_topology"):
            comm.all_reduce(np.zeros(3))


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda c: c.all_reduce(np.zeros(3), op="mean"), "op"),
        (lambda c: c.all_reduce(np.zeros(3), op=None), "op"),
        (lambda c: c.all_reduce(np.zeros(3), quantize="int4"), "quantize"),
        (lambda c: c.all_reduce(np.zeros(3, dtype=np.int64), quantize="fp8"), "quantize"),
        (lambda c: c.all_reduce(np.zeros(3), block=0), "block"),
        (lambda c: c.all_reduce(np.zeros(3), block=2.5), "block"),
        (lambda c: c.all_reduce_async(np.zeros(3), op="prod"), "op"),
        (lambda c: c.broadcast(np.zeros(3), 1), "root"),
        (lambda c: c.broadcast(np.zeros(3), -1), "root"),
        (lambda c: c.pair_average(np.zeros(3), 0, group_size=1), "group_size"),
        (lambda c: c.pair_average(np.zeros(3), -2), "step"),
        (lambda c: c.sync_state({"w": np.zeros(3)}, -1), "revision"),
        (lambda c: c.sync_state([np.zeros(3)], 0), "named_arrays"),
        (lambda c: c.sync_state({1: np.zeros(3)}, 0), "named_arrays"),
        (lambda c: c.all_gather_scalars([[1.0]]), "values"),
    ],
)
def test_bad_arguments_name_the_argument(
    comm: collective.Communicator, call: Any, argument: str
) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        call(comm)
    assert error.value.argument == argument
    x = np.ones(3)
    comm.all_reduce(x)  # the communicator is still usable
    assert x.tolist() == [1.0, 1.0, 1.0]


def _readonly() -> np.ndarray[Any, Any]:
    x = np.zeros(4)
    x.flags.writeable = False
    return x


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(4, dtype=np.uint8),
        np.zeros(4, dtype=np.complex64),
        np.zeros(4, dtype=np.bool_),
        np.zeros(4, dtype=">f4"),
        np.zeros((4, 4))[:, 1],
        np.zeros((4, 4)).T,
        np.frombuffer(bytes(33), dtype=np.uint8)[1:].view(np.float64),
        _readonly(),
        [1.0, 2.0],
        3.0,
    ],
    ids=[
        "uint8",
        "complex",
        "bool",
        "big-endian",
        "strided",
        "transposed",
        "unaligned",
        "read-only",
        "list",
        "scalar",
    ],
)
def test_bad_arrays_raise_dtype_error(comm: collective.Communicator, array: Any) -> None:
    with pytest.raises(DTypeError) as error:
        comm.all_reduce(array)
    assert error.value.argument == "array"
    assert isinstance(error.value, TypeError)


def test_native_layer_checks_arrays_too(comm: collective.Communicator) -> None:
    """The binding refuses what the Python layer would never pass it."""
    native = comm._native
    with pytest.raises(DTypeError, match="array"):
        native.all_reduce(np.zeros(4, dtype=np.float32), "float64")
    with pytest.raises(DTypeError, match="array"):
        native.all_reduce(np.zeros((4, 4))[:, 0], "float64")
    with pytest.raises(DTypeError, match="writable"):
        native.all_reduce(_readonly(), "float64")
    with pytest.raises(DTypeError, match="array"):
        native.all_reduce(np.zeros(4, dtype=np.float16), "bfloat16")
    with pytest.raises(InvalidArgumentError, match=r"dtype|float128"):
        native.all_reduce(np.zeros(4), "float128")
    buffer = np.zeros(4)
    with pytest.raises(InvalidArgumentError, match="out"):
        native.all_gather(buffer, "float64", buffer)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"connections": 0}, "connections"),
        ({"connections": 65}, "connections"),
        ({"bind_port": 70000}, "bind_port"),
        ({"bind_host": 5}, "bind_host"),
        ({"secret": ""}, "secret"),
    ],
)
def test_bad_communicator_options(
    coordinator: collective.Coordinator, kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        collective.Communicator(coordinator.address, **{"secret": SECRET, **kwargs})
    assert error.value.argument == argument


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"heartbeat_interval_s": 0}, "heartbeat_interval_s"),
        ({"heartbeat_timeout_s": 0.2}, "heartbeat_timeout_s"),
        ({"bind": "not an address"}, "bind"),
        ({"secret": ""}, "secret"),
    ],
)
def test_bad_coordinator_options(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        collective.Coordinator(**{"secret": SECRET, **kwargs})
    assert error.value.argument == argument


def test_close_is_idempotent_and_final(coordinator: collective.Coordinator) -> None:
    comm = collective.Communicator(coordinator.address, secret=SECRET)
    comm.connect()
    comm.update_topology()
    comm.close()
    comm.close()
    with pytest.raises(InvalidArgumentError, match="closed"):
        comm.all_reduce(np.zeros(2))


def test_pairing_and_hash_helpers() -> None:
    for world in range(1, 9):
        groups = collective.pairing_groups(world, 11, group_size=3)
        assert sorted(r for g in groups for r in g) == list(range(world))
    assert collective.pairing_groups(4, 0) == collective.pairing_groups(4, 0)
    a = np.arange(4, dtype=np.float32)
    assert collective.state_hash(a) != collective.state_hash(a.astype(np.float64))
    with pytest.raises(InvalidArgumentError):
        collective.pairing_groups(4, 0, group_size=1)


def test_pairing_a_world_past_the_limit_is_an_error_not_an_allocation() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        collective.pairing_groups(2**40, 0)
    assert raised.value.argument == "world_size"
