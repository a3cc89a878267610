"""Fuzz entries of thrifty.collective: construction, a world of one on 127.0.0.1, helpers.

Every world binds 127.0.0.1 only and every blocking call carries a short deadline
(``timeout_s``), so a case cannot hang on the network.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
from fuzz_core import Case, Mismatch, entry, expect
from fuzz_values import NOT_NUMBERS, chance, integer, pick, real, size

import thrifty
import thrifty.errors
from thrifty import collective

SECRET = "fuzz-secret"
DEADLINE_S = 5.0
DTYPES = ("float32", "float64", "float16", "int32", "int64")


@contextlib.contextmanager
def world_of_one(**options: Any) -> Iterator[Any]:
    """A coordinator and one joined peer on 127.0.0.1, closed on the way out."""
    with collective.Coordinator(
        "127.0.0.1:0", secret=SECRET, heartbeat_interval_s=0.2, heartbeat_timeout_s=2.0
    ) as coordinator:
        comm = collective.Communicator(
            coordinator.address,
            secret=SECRET,
            timeout_s=DEADLINE_S,
            bind_host="127.0.0.1",
            connections=int(options.get("connections", 1)),
        )
        with comm:
            comm.connect()
            while comm.world_size < 1:
                comm.update_topology()
            yield comm


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _address(rng: np.random.Generator) -> tuple[Any, bool | None, str]:
    if chance(rng, 0.6):
        return "127.0.0.1:0", True, "127.0.0.1:0"
    bad = pick(
        rng,
        (
            "nonsense",
            "",
            "127.0.0.1",
            "127.0.0.1:99999",
            "127.0.0.1:-1",
            "127.0.0.1:abc",
            "256.1.1.1:0",
            ":0",
            "127.0.0.1:0:0",
            "[::1]:0",
            "localhost:0",
            "x" * 600 + ":0",
            None,
            5,
            b"127.0.0.1:0",
        ),
    )
    valid = None if bad in ("[::1]:0", "localhost:0") else False
    return bad, valid, f"bind {bad!r}"


@entry(
    "collective.Coordinator", covers=("collective.CoordinatorSnapshot",), fast_calls=30, weight=0.3
)
def coordinator(rng: np.random.Generator) -> Case:
    bind, valid, label = _address(rng)
    kwargs: dict[str, Any] = {"secret": SECRET}
    if chance(rng, 0.2):
        kwargs["secret"] = pick(rng, (None, "", 5, b"s", "s" * 10_000))
        ok = None if isinstance(kwargs["secret"], str) or kwargs["secret"] is None else False
        valid, label = _and(valid, ok), f"{label}; secret {type(kwargs['secret']).__name__}"
    interval, ok_i, label_i = real(rng, 0.0, math.inf, low_open=True, typical=(0.05, 1.0))
    timeout, ok_t, label_t = real(rng, 0.0, math.inf, low_open=True, typical=(1.0, 5.0))
    kwargs.update(heartbeat_interval_s=interval, heartbeat_timeout_s=timeout)
    valid = _and(valid, ok_i, ok_t)
    if ok_i and ok_t and float(timeout) <= float(interval):
        valid = _and(valid, False)
    if chance(rng, 0.2):
        kwargs["fellows"] = pick(rng, ("127.0.0.1:1", ["127.0.0.1:1"], [5], [None], ["nonsense"]))
        ok = None if kwargs["fellows"] in (["127.0.0.1:1"], ["nonsense"]) else False
        valid, label = _and(valid, ok), f"{label}; fellows {kwargs['fellows']!r}"
    for duration, ok in ((interval, ok_i), (timeout, ok_t)):
        # Below a nanosecond a duration rounds to zero (refused); past 1e6 s it is a stall.
        if ok is True and not 1e-6 <= float(duration) <= 1e6:
            valid = _and(valid, None)
    label += f"; interval {label_i}; timeout {label_t}"

    def session() -> None:
        with collective.Coordinator(bind, **kwargs) as c:
            host, _, port = c.address.rpartition(":")
            expect(host and 0 < int(port) < 65536, f"address {c.address!r}")
            snapshot = c.snapshot()
            expect(snapshot.members == () and snapshot.epoch == 0, f"snapshot {snapshot}")
            c.close()
        c.close()

    return Case(session, valid=valid, label=label)


@entry(
    "collective.Communicator.__init__",
    covers=("collective.Communicator",),
    fast_calls=40,
    weight=0.5,
)
def communicator_construction(rng: np.random.Generator) -> Case:
    """Arguments only; a connect() to a port where nobody listens must fail by its deadline."""
    kwargs: dict[str, Any] = {"secret": SECRET, "bind_host": "127.0.0.1"}
    coordinator_arg: Any = "127.0.0.1:1"
    valid: bool | None = True
    labels = []
    if chance(rng, 0.3):
        coordinator_arg = pick(
            rng,
            (
                "nonsense",
                "",
                "127.0.0.1:1,127.0.0.1:2",
                [],
                ["127.0.0.1:1", 5],
                None,
                5,
                ("127.0.0.1:1",),
            ),
        )
        ok = (
            True
            if coordinator_arg == ("127.0.0.1:1",)
            else (None if coordinator_arg in ("nonsense", "") else False)
        )
        valid, labels = _and(valid, ok), [f"coordinator {coordinator_arg!r}"]
    for name, draw in (
        ("connections", lambda: integer(rng, 1, 64, typical=4)),
        ("timeout_s", lambda: real(rng, 0.0, math.inf, low_open=True, typical=(0.05, 0.5))),
        ("bind_port", lambda: integer(rng, 0, 65535, typical=0)),
    ):
        if chance(rng, 0.4):
            kwargs[name], ok, label = draw()
            valid, labels = _and(valid, ok), [*labels, f"{name} {label}"]
    if chance(rng, 0.15):
        kwargs["advertise_host"] = pick(rng, (None, "127.0.0.1", 5, b"x"))
        ok = None if kwargs["advertise_host"] in (None, "127.0.0.1") else False
        valid, labels = _and(valid, ok), [*labels, f"advertise {kwargs['advertise_host']!r}"]
    if chance(rng, 0.15):
        kwargs["bind_host"] = pick(rng, ("nonsense", 5, None, "127.0.0.1"))
        ok = None if isinstance(kwargs["bind_host"], str) else False
        valid, labels = _and(valid, ok), [*labels, f"bind_host {kwargs['bind_host']!r}"]
    timeout = kwargs.get("timeout_s", 0.2)
    if not (
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and 0 < float(timeout) <= 1.0
    ):
        kwargs["timeout_s"] = 0.2 if valid is not False else kwargs.get("timeout_s")

    def session() -> None:
        comm = collective.Communicator(coordinator_arg, **kwargs)
        try:
            expect(comm.rank == -1 and comm.world_size == 0, "a fresh peer already has a rank")
            with contextlib.suppress(thrifty.errors.CollectiveError):
                comm.connect()  # nobody listens on port 1: a named error, by the deadline
            try:
                comm.all_reduce(np.ones(3, np.float32))
            except (thrifty.InvalidArgumentError, thrifty.errors.CollectiveError):
                pass
            else:
                raise Mismatch("a collective ran with no coordinator")
        finally:
            comm.close()

    return Case(
        session, valid=None if valid is True else valid, label="; ".join(labels) or "defaults"
    )


def _array(rng: np.random.Generator, dtype: str) -> np.ndarray[Any, Any]:
    n = size(rng, 0, 300, (1, 255, 256, 257, 1023, 1024, 1025))
    if dtype.startswith("int"):
        return rng.integers(-1000, 1000, size=n).astype(dtype)
    return (rng.standard_normal(n) * pick(rng, (1.0, 1e-30, 1e30))).astype(dtype)


@entry(
    "collective.Communicator",
    covers=("collective.Handle", "collective.OpStats", "collective.SyncReport"),
    fast_calls=25,
    weight=0.15,
)
def communicator(rng: np.random.Generator) -> Case:
    """A world of one: every collective is the identity (up to quantization)."""
    plan = [
        str(
            pick(
                rng,
                (
                    "all_reduce",
                    "all_reduce",
                    "async",
                    "broadcast",
                    "gather",
                    "barrier",
                    "scalars",
                    "pair",
                    "sync",
                    "hostile",
                ),
            )
        )
        for _ in range(size(rng, 1, 8))
    ]
    seeds = rng.integers(0, 2**32, size=len(plan))

    def session() -> None:
        with world_of_one() as comm:
            expect(
                comm.rank == 0 and comm.world_size == 1,
                f"rank {comm.rank}, world {comm.world_size}",
            )
            revision = None
            for step, seed_value in zip(plan, seeds, strict=True):
                local = np.random.default_rng(seed_value)
                dtype = str(pick(local, DTYPES))
                x = _array(local, dtype)
                original = x.copy()
                if step in ("all_reduce", "async"):
                    op = str(pick(local, ("sum", "avg", "max", "min")))
                    quantize = (
                        pick(local, (None, None, "int8", "fp8", "fp4"))
                        if dtype.startswith("float")
                        else None
                    )
                    block = int(pick(local, (1, 7, 64, 256)))
                    if quantize is not None and not _quantizable(x):
                        # Refused as a world of any size refuses it, buffer unchanged; the
                        # failed collective asks for a topology update.
                        try:
                            comm.all_reduce(x, op=op, quantize=quantize, block=block)
                        except (thrifty.NonFiniteError, thrifty.InvalidArgumentError) as error:
                            expect(error.argument == "array", f"names {error.argument}")
                        else:
                            raise Mismatch(f"{quantize} accepted values it cannot carry")
                        expect(np.array_equal(x, original, equal_nan=True), "buffer changed")
                        comm.update_topology()
                        continue
                    if step == "async":
                        handle = comm.all_reduce_async(x, op=op, quantize=quantize, block=block)
                        stats = handle.wait()
                        expect(handle.done() and stats.seconds >= 0, "handle not done after wait")
                    else:
                        comm.all_reduce(x, op=op, quantize=quantize, block=block)
                    _check_reduced(x, original, quantize, block)
                elif step == "broadcast":
                    comm.broadcast(x, 0)
                    expect(
                        np.array_equal(x, original, equal_nan=True), "broadcast changed the array"
                    )
                elif step == "gather":
                    out = comm.all_gather(x)
                    expect(out.shape == (1, *x.shape) and np.array_equal(out[0], x), "all_gather")
                elif step == "barrier":
                    comm.barrier()
                elif step == "scalars":
                    values = local.standard_normal(size(local, 0, 5)).tolist()
                    out = comm.all_gather_scalars(values)
                    expect(
                        np.array_equal(out, np.array([values]).reshape(1, len(values))), "scalars"
                    )
                elif step == "pair":
                    group = comm.pair_average(x, int(local.integers(0, 100)))
                    expect(group == [0], f"group {group}")
                    expect(np.array_equal(x, original), "a group of one changed the array")
                elif step == "sync":
                    arrays = {
                        f"a{i}": _array(local, str(pick(local, DTYPES)))
                        for i in range(size(local, 0, 3))
                    }
                    before = {k: v.copy() for k, v in arrays.items()}
                    report = comm.sync_state(arrays, revision)
                    expect(report.fetched == () and report.world_size == 1, f"report {report}")
                    revision = report.revision + 1
                    for k in arrays:
                        expect(np.array_equal(arrays[k], before[k]), "sync_state changed an array")
                else:
                    _hostile_collective(local, comm, x)

    return Case(session, valid=True, label=f"{plan}")


def _quantizable(x: np.ndarray[Any, Any]) -> bool:
    """Whether every value is finite in the float32 that the quantizers work in."""
    wide = x.astype(np.float64)
    return bool(np.isfinite(wide).all() and (np.abs(wide) <= np.finfo(np.float32).max).all())


def _check_reduced(
    x: np.ndarray[Any, Any], original: np.ndarray[Any, Any], quantize: Any, block: int
) -> None:
    if quantize is None:
        expect(np.array_equal(x, original), "a world of one changed the array")
        return
    # The largest error of one quantization, relative to the block's absmax: half a code
    # (int8), the relative spacing (fp8), half the widest gap of E2M1, 2 of 6 (fp4).
    relative = {"int8": 1.0 / 254.0, "fp8": 2.0**-4, "fp4": 1.0 / 6.0}[quantize]
    for start in range(0, original.size, block):
        chunk = original[start : start + block].astype(np.float64)
        got = x[start : start + block].astype(np.float64)
        absmax = float(np.abs(chunk).max()) if chunk.size else 0.0
        # Quantized twice (the contribution, then the owner's result), then rounded back to
        # the array's dtype.
        spacing = float(np.spacing(np.array(absmax, dtype=original.dtype)))
        bound = 2.5 * absmax * relative + 2 * spacing
        expect(np.all(np.abs(got - chunk) <= bound + 1e-30), f"{quantize} error above its bound")


def _hostile_collective(rng: np.random.Generator, comm: Any, x: np.ndarray[Any, Any]) -> None:
    import torch

    frozen = np.ones(4, np.float32)
    frozen.flags.writeable = False
    calls = [
        lambda: comm.all_reduce(x, op="mean"),
        lambda: comm.all_reduce(x, op=None),
        lambda: comm.all_reduce(np.ones(4, np.int32), quantize="int8"),
        lambda: comm.all_reduce(np.ones(4, np.float32), quantize="int4"),
        lambda: comm.all_reduce(np.ones(4, np.float32), block=0),
        lambda: comm.all_reduce(np.ones(4, np.float32), block=2**70),
        lambda: comm.all_reduce(np.ones(4, np.int8)),
        lambda: comm.all_reduce(np.ones(4, np.complex64)),
        lambda: comm.all_reduce(np.ones(4, object)),
        lambda: comm.all_reduce(np.ones(8, np.float32)[::2]),
        lambda: comm.all_reduce(frozen),
        lambda: comm.all_reduce([1.0, 2.0]),
        lambda: comm.all_reduce(torch.ones(8)[::2]),
        lambda: comm.broadcast(np.ones(3, np.float32), 1),
        lambda: comm.broadcast(np.ones(3, np.float32), -1),
        lambda: comm.pair_average(np.ones(3, np.float32), -1),
        lambda: comm.pair_average(np.ones(3, np.float32), 0, group_size=1),
        lambda: comm.all_gather_scalars([[1.0], [2.0]]),
        lambda: comm.all_gather_scalars(["a"]),
        lambda: comm.sync_state([("a", np.ones(3))]),
        lambda: comm.sync_state({"a": np.ones(3)}, revision=-1),
        lambda: comm.sync_state({5: np.ones(3)}),
        lambda: comm.sync_state({"a": "not an array"}),
    ]
    chosen = int(rng.integers(len(calls)))
    before = x.copy()
    try:
        calls[chosen]()
    except thrifty.ThriftyError as error:
        expect(not isinstance(error, thrifty.InternalError), f"InternalError: {error}")
    else:
        raise Mismatch(f"hostile collective call {chosen} was accepted")
    expect(np.array_equal(x, before, equal_nan=True), f"hostile call {chosen} changed its array")


# The largest world pairing_groups accepts; past it the world is refused by name.
MAX_WORLD = 2**20


@entry("collective.pairing_groups", fast_calls=60)
def pairing_groups(rng: np.random.Generator) -> Case:
    world, w_ok, w_label = integer(rng, 0, None, typical=int(rng.integers(0, 40)), size_like=True)
    step, s_ok, s_label = integer(rng, 0, 2**64 - 1, typical=int(rng.integers(0, 1000)))
    group, g_ok, g_label = integer(rng, 2, None, typical=int(rng.integers(2, 6)))
    valid = _and(w_ok, s_ok, g_ok)
    label = f"world {w_label}; step {s_label}; group {g_label}"
    huge = (
        isinstance(world, (int, np.integer))
        and not isinstance(world, bool)
        and int(world) > MAX_WORLD
    )
    if huge:
        valid = _and(valid, False)
    if valid is not True:
        return Case(collective.pairing_groups, (world, step, group), valid=valid, label=label)
    n, g = int(world), int(group)

    def check(groups: Any) -> None:
        ranks = sorted(r for grp in groups for r in grp)
        expect(ranks == list(range(n)), f"groups {groups} do not partition range({n})")
        for grp in groups:
            expect(grp == sorted(grp), "a group is not sorted")
            if n >= g:
                expect(g <= len(grp) < 2 * g, f"group of {len(grp)} for group_size {g}")
        again = collective.pairing_groups(world, step, group)
        expect(again == groups, "the pairing is not a function of step")

    return Case(
        collective.pairing_groups, (world, step, group), valid=True, check=check, label=label
    )


@entry("collective.state_hash", fast_calls=60)
def state_hash(rng: np.random.Generator) -> Case:
    import torch

    dtype = str(pick(rng, DTYPES))
    x = _array(rng, dtype)
    if chance(rng, 0.3) and x.size >= 4:
        x = x.reshape(2, -1) if x.size % 2 == 0 else x
    value: Any = x
    valid: bool | None = True
    label = f"{x.dtype} {x.shape}"
    roll = int(rng.integers(8))
    if roll == 0:
        value, label = torch.from_numpy(x.copy()), f"{label} tensor"
    elif roll == 1:
        value = pick(rng, (*NOT_NUMBERS, [1.0, 2.0]))
        valid = None if isinstance(value, np.ndarray) else False
        label = f"{label} not an array"
    elif roll == 2:
        value, valid, label = (
            x.astype(pick(rng, (np.int8, np.uint64, np.complex64, np.bool_, object))),
            False,
            f"{label} bad dtype",
        )
    elif roll == 3 and x.ndim == 1 and x.size > 1:
        value, valid, label = x[::2], None, f"{label} strided"
    if valid is not True:
        return Case(collective.state_hash, (value,), valid=valid, label=label)

    def check(digest: Any) -> None:
        expect(
            isinstance(digest, str) and len(digest) == 32 and int(digest, 16) >= 0,
            f"digest {digest!r}",
        )
        expect(collective.state_hash(x.copy()) == digest, "equal arrays hash differently")
        if x.size:
            other = x.copy()
            other.reshape(-1)[0] = (
                other.reshape(-1)[0] + 1 if dtype.startswith("int") else -other.reshape(-1)[0] + 1
            )
            expect(collective.state_hash(other) != digest, "different arrays hash alike")
        expect(
            collective.state_hash(x.reshape(-1, 1) if x.ndim == 1 else x.reshape(-1)) != digest
            or x.size == 0,
            "shape not hashed",
        )

    return Case(collective.state_hash, (value,), valid=True, check=check, label=label)


@contextlib.contextmanager
def torch_world_of_one() -> Iterator[None]:
    """A gloo process group of one, through a file store in a fresh directory."""
    import torch.distributed as dist

    directory = tempfile.mkdtemp(prefix="thrifty-fuzz-")
    store = dist.FileStore(os.path.join(directory, "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, "store"))
            os.rmdir(directory)


@entry(
    "collective.TorchDistributed", covers=("collective.TorchSyncReport",), fast_calls=10, weight=0.1
)
def torch_distributed(rng: np.random.Generator) -> Case:
    import torch

    plan = [
        str(pick(rng, ("all_reduce", "gather", "scalars", "pair", "sync", "hostile")))
        for _ in range(size(rng, 1, 6))
    ]
    seeds = rng.integers(0, 2**32, size=len(plan))
    outside = chance(rng, 0.1)

    def session() -> None:
        if outside:
            collective.TorchDistributed()  # no process group: a named error
            return
        with torch_world_of_one():
            comm = collective.TorchDistributed()
            expect(comm.rank == 0 and comm.world_size == 1, "rank and world")
            for step, seed_value in zip(plan, seeds, strict=True):
                local = np.random.default_rng(seed_value)
                x = _array(local, str(pick(local, ("float32", "float64", "int64"))))
                original = x.copy()
                if step == "all_reduce":
                    comm.all_reduce(x, op=str(pick(local, ("sum", "avg", "max", "min"))))
                    expect(np.array_equal(x, original), "a world of one changed the array")
                elif step == "gather":
                    out = comm.all_gather(x)
                    got = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
                    expect(got.shape == (1, *x.shape) and np.array_equal(got[0], x), "all_gather")
                elif step == "scalars":
                    values = local.standard_normal(size(local, 1, 4)).tolist()
                    out = np.asarray(comm.all_gather_scalars(values))
                    expect(np.allclose(out, [values]), "scalars")
                elif step == "pair":
                    group = comm.pair_average(x, int(local.integers(0, 100)))
                    expect(list(group) == [0] and np.array_equal(x, original), "pair_average")
                elif step == "sync":
                    tensors = {"w": torch.from_numpy(local.standard_normal(3))}
                    report = comm.sync_state(tensors)
                    expect(report.world_size == 1 and not report.fetched, f"report {report}")
                else:
                    bad = pick(
                        local,
                        (("op", "mean"), ("quantize", "int8"), ("array", [1.0]), ("op", ["sum"])),
                    )
                    try:
                        if bad[0] == "array":
                            comm.all_reduce(bad[1])
                        else:
                            comm.all_reduce(x, **{bad[0]: bad[1]})
                    except thrifty.ThriftyError as error:
                        expect(not isinstance(error, thrifty.InternalError), "InternalError")
                    else:
                        raise Mismatch(f"TorchDistributed accepted {bad}")

    return Case(session, valid=None if outside else True, label=f"{plan}; outside {outside}")
