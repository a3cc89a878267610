"""One peer of a collective: connect, vote on the topology, run collectives."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty import _native
from thrifty._checks import check_choice, check_int, check_positive
from thrifty.collective._buffers import FLOAT_DTYPES, Buffer, like
from thrifty.collective._coordinator import Coordinator, check_text
from thrifty.collective._intake import intake
from thrifty.collective._pairing import USIZE_MAX
from thrifty.collective._staging import PinnedPool
from thrifty.errors import InvalidArgumentError, PeerLost

OPS = _native.REDUCE_OPS
QUANTIZATIONS = _native.QUANTIZATIONS


@dataclass(frozen=True)
class OpStats:
    """Traffic and time of one collective on this peer.

    ``bytes_sent`` and ``bytes_received`` count what crossed this peer's data links, frame
    headers included (quantized collectives send encoded bytes); ``seconds`` is the wall time
    of the call from its start to the commit.
    """

    bytes_sent: int
    bytes_received: int
    seconds: float


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`Communicator.sync_state` did on this peer.

    Attributes
    ----------
    revision
        The revision every peer now holds.
    fetched
        Names of the arrays this peer fetched (empty when it was up to date).
    bytes_received, bytes_sent
        Array bytes moved by this peer.
    sources
        For each fetched array, ``(name, rank it came from)``.
    state_hash
        xxh3-128 (hex) of the whole winning state: equal on every peer after the call.
    peers_out_of_date
        How many peers had to fetch something.
    world_size
        How many peers took part.
    """

    revision: int
    fetched: tuple[str, ...]
    bytes_received: int
    bytes_sent: int
    sources: tuple[tuple[str, int], ...]
    state_hash: str
    peers_out_of_date: int
    world_size: int


def _stats(raw: _native.OpStats) -> OpStats:
    return OpStats(raw.bytes_sent, raw.bytes_received, raw.seconds)


class Handle:
    """An all-reduce running in the background (:meth:`Communicator.all_reduce_async`).

    The array must not be read or written until :meth:`wait` returns. Collectives run in
    the order they were called, so a later synchronous call on the same communicator
    waits for this one first.
    """

    def __init__(self, comm: Communicator, pending: _native.PendingOp, buffer: Buffer) -> None:
        self._comm = comm
        self._pending = pending
        self._buffer = buffer
        self._stats: OpStats | None = None
        self._error: BaseException | None = None

    def wait(self) -> OpStats:
        """Block until the all-reduce has finished; its stats, or its error (raised).

        On failure the array holds its input again, exactly. Calling ``wait`` again returns
        (or raises) the same.
        """
        if self._stats is None and self._error is None:
            try:
                self._stats = _stats(self._pending.wait())
            except BaseException as error:
                self._error = error
                self._buffer.done(False)
                raise
            self._buffer.done(True)
            self._comm.last_stats = self._stats
        if self._error is not None:
            raise self._error
        assert self._stats is not None
        return self._stats

    def done(self) -> bool:
        """Whether the all-reduce has finished (``wait`` would not block); never blocks."""
        return self._stats is not None or self._error is not None or self._pending.done()


class Communicator:
    """One peer of a fault-tolerant, authenticated, quantizing all-reduce over TCP.

    A peer connects to the coordinator (:meth:`connect`), joins a topology
    (:meth:`update_topology`), and runs collectives with the other members, in place on
    NumPy arrays and torch tensors (CPU without copying; CUDA through a pinned host
    buffer). Every collective ends in a commit vote at the coordinator: it either completes
    on every member or fails on every member with the caller's buffer restored exactly,
    raising :class:`~thrifty.errors.PeerLost` (call :meth:`update_topology` and retry with
    the survivors), :class:`~thrifty.errors.CollectiveTimeout` or
    :class:`~thrifty.errors.CollectiveAborted`. This is PCCL's design (arXiv 2505.14065).

    Collectives run on a thread of their own, one at a time, in the order they were called;
    every peer must call the same collectives in the same order.

    Parameters
    ----------
    coordinator
        The coordinator's ``host:port`` (or a :class:`Coordinator` in this process), or a
        list of them: the first, then standbys. A peer that loses its coordinator raises
        :class:`~thrifty.errors.PeerLost`, and its next :meth:`update_topology` dials the
        list in order until one answers (the lost one may come back too). The standby waits
        up to one heartbeat timeout for every member of the old view, so the world goes on
        whole, with no single point of failure.
    secret
        The pre-shared secret; default: ``THRIFTY_SECRET``. Every connection, to the
        coordinator and between peers, runs a mutual HMAC-SHA256 challenge-response.
    connections
        TCP connections per pair of peers; chunks are striped over them.
    timeout_s
        The deadline of every blocking call.
    bind_host, bind_port
        Where this peer listens for the other peers (port 0: any free port).
    advertise_host
        The address the other peers dial; default: the address this peer uses to reach the
        coordinator. Set it behind NAT or with several interfaces.
    shared_memory
        Let the links to peers on this machine carry their bytes through shared memory
        instead of loopback TCP (same results, bit for bit, and the same authentication,
        restore and failure detection). A link takes it only when both peers allow it and
        run under the same kernel boot, network namespace and pid namespace; every other
        link stays on TCP. Off by default until it has been through the long chaos soak.
        Leave it off when the traffic must go through the network stack, as with traffic
        shaping or capture on the loopback.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import collective
    >>> coordinator = collective.Coordinator(secret="s3cret")
    >>> comm = collective.Communicator(coordinator.address, secret="s3cret")
    >>> comm.connect()
    >>> while comm.world_size < 1:  # every peer loops until the world it expects
    ...     comm.update_topology()
    >>> comm.rank, comm.world_size
    (0, 1)
    >>> grads = np.arange(4, dtype=np.float32)
    >>> comm.all_reduce(grads, op="avg")
    >>> grads.tolist()
    [0.0, 1.0, 2.0, 3.0]
    >>> comm.all_gather_scalars([0.5, 2.0]).tolist()
    [[0.5, 2.0]]
    >>> comm.close()
    >>> coordinator.close()
    """

    def __init__(
        self,
        coordinator: str | Coordinator | Sequence[str | Coordinator],
        *,
        secret: str | None = None,
        connections: int = 4,
        timeout_s: float = 60.0,
        bind_host: str = "0.0.0.0",
        bind_port: int = 0,
        advertise_host: str | None = None,
        shared_memory: bool = False,
    ) -> None:
        addresses = [coordinator] if isinstance(coordinator, (str, Coordinator)) else coordinator
        if not isinstance(addresses, Sequence) or not addresses:
            raise InvalidArgumentError(
                "coordinator must be host:port, a Coordinator, or a non-empty list of them",
                "coordinator",
            )
        texts = [a.address if isinstance(a, Coordinator) else a for a in addresses]
        for text in texts:
            check_text(text, "coordinator")
            if "," in text:
                raise InvalidArgumentError(
                    f"coordinator must be a list of addresses, not one string with commas: "
                    f"{text!r}",
                    "coordinator",
                )
        check_text(secret, "secret", optional=True)
        check_text(bind_host, "bind_host")
        check_text(advertise_host, "advertise_host", optional=True)
        connections = check_int(connections, "connections", minimum=1, maximum=64)
        timeout = check_positive(timeout_s, "timeout_s")
        port = check_int(bind_port, "bind_port", minimum=0, maximum=65535)
        if not isinstance(shared_memory, bool):
            raise InvalidArgumentError(
                f"shared_memory must be True or False, got {shared_memory!r}", "shared_memory"
            )
        self._native = _native.Communicator(
            ",".join(texts),
            secret,
            connections,
            timeout,
            bind_host,
            port,
            advertise_host,
            shared_memory,
        )
        self._staging = PinnedPool()
        self._connected = False
        #: The traffic and time of the last collective this peer finished.
        self.last_stats = OpStats(0, 0, 0.0)
        self._revision: int | None = None  # of the last successful sync_state

    # Membership -------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This peer's rank in the current topology; -1 before it has joined one."""
        rank = self._native.rank
        return -1 if rank is None else int(rank)

    @property
    def world_size(self) -> int:
        """The number of peers in the current topology (0 before joining one)."""
        return int(self._native.world_size)

    @property
    def epoch(self) -> int:
        """The current topology's epoch: it grows by at least one at every change."""
        return int(self._native.epoch)

    @property
    def id(self) -> int:
        """This peer's random 64-bit identity, as the coordinator's snapshot lists it."""
        return int(self._native.id)

    @property
    def shared_memory_links(self) -> int:
        """How many of this peer's links in the current topology go through shared memory
        (0 before joining one, or with every peer on another machine)."""
        return int(self._native.shared_memory_links())

    def connect(self) -> None:
        """Start listening for peers and register with the coordinator, as a pending peer.

        Raises :class:`~thrifty.errors.AuthenticationError` when the coordinator does not
        hold the same secret. Calling it again does nothing.
        """
        self._native.connect()
        self._connected = True

    def update_topology(self) -> None:
        """Vote on the topology: admits every pending peer and drops the lost ones.

        Blocks until every live member has asked too (a member keeps the others waiting
        until it calls this, or is lost), then builds the links of the new topology. Call it
        after :class:`~thrifty.errors.PeerLost`, and at start-up in a loop until
        :attr:`world_size` reaches the number of peers you expect.
        """
        self._native.update_topology()

    # Collectives ------------------------------------------------------------------------

    def _require_topology(self) -> None:
        """Refuse a collective before this peer belongs to a topology (the core cannot tell
        its ring position then)."""
        if self._native.rank is not None:
            return
        if not self._connected:
            raise InvalidArgumentError(
                "communicator is not connected: call connect() first", "communicator"
            )
        raise PeerLost("no topology yet: call update_topology() before the first collective")

    def _reduce_intake(self, array: Any, op: Any, quantize: Any, block: Any) -> Buffer:
        """Check every argument of an all-reduce, then take in the array."""
        self._require_topology()
        check_choice(op, "op", OPS)
        if quantize is not None:
            check_choice(quantize, "quantize", QUANTIZATIONS)
        check_int(block, "block", minimum=1, maximum=USIZE_MAX)
        buffer = intake(array, "array", writable=True, staging=self._staging)
        if quantize is not None and buffer.dtype not in FLOAT_DTYPES:
            buffer.done(False)
            raise InvalidArgumentError(
                f"quantize needs a floating-point array, got {buffer.dtype}", "quantize"
            )
        return buffer

    def all_reduce(
        self, array: Any, *, op: str = "sum", quantize: str | None = None, block: int = 64
    ) -> None:
        """Reduce ``array`` over every member, in place.

        Parameters
        ----------
        array
            A NumPy array or torch tensor of float32, float64, float16, bfloat16, int32 or
            int64, C-contiguous; every member passes the same shape and dtype.
        op
            ``"sum"``, ``"avg"``, ``"max"`` or ``"min"``. Sums of floats add in the
            element's precision (float16 and bfloat16 round once per addition); integer
            sums wrap, and ``"avg"`` of integers is the floor division of the sum, like
            NumPy's ``//``. Every member ends with bit-identical results.
        quantize
            ``None`` (exact), or ``"int8"``, ``"fp8"`` (E4M3) or ``"fp4"`` (E2M1): each
            contribution is quantized once, in blocks of ``block`` values with one scale
            each, and sent straight to the owner of its slice, which reduces in fp32 and
            quantizes the result once; so the error does not grow with the world size. Float
            arrays only; values must be finite.
        block
            Values per quantization scale.
        """
        # The same job as the async call, waited for: one path restores or writes back.
        self.all_reduce_async(array, op=op, quantize=quantize, block=block).wait()

    def all_reduce_async(
        self, array: Any, *, op: str = "sum", quantize: str | None = None, block: int = 64
    ) -> Handle:
        """:meth:`all_reduce` in the background: returns at once with a :class:`Handle`.

        The Python thread is free for other work (the collective releases the GIL); call
        ``handle.wait()`` before touching ``array`` again.
        """
        buffer = self._reduce_intake(array, op, quantize, block)
        try:
            pending = self._native.all_reduce_async(buffer.host, buffer.dtype, op, quantize, block)
        except BaseException:
            buffer.done(False)
            raise
        return Handle(self, pending, buffer)

    def broadcast(self, array: Any, root: int) -> None:
        """Copy rank ``root``'s ``array`` into every member's ``array``, in place."""
        self._require_topology()
        world = self.world_size
        root = check_int(root, "root", minimum=0, maximum=world - 1 if world > 0 else None)
        buffer = intake(array, "array", writable=True, staging=self._staging)
        try:
            raw = self._native.broadcast(buffer.host, buffer.dtype, root)
        except BaseException:
            buffer.done(False)
            raise
        buffer.done(True)
        self.last_stats = _stats(raw)

    def all_gather(self, array: Any) -> Any:
        """Every member's ``array``, stacked by rank: shape ``(world_size, *array.shape)``.

        The result has the type of ``array`` (a NumPy array, or a torch tensor on the same
        device); ``array`` itself is only read.
        """
        self._require_topology()
        buffer = intake(array, "array", writable=False, staging=self._staging)
        try:
            host = buffer.host
            out = np.empty((self.world_size, *host.shape), dtype=host.dtype)
            raw = self._native.all_gather(host, buffer.dtype, out)
        finally:
            buffer.done(False)
        self.last_stats = _stats(raw)
        return like(buffer.original, out, buffer.dtype)

    def barrier(self) -> None:
        """Return once every member has called ``barrier`` (or raise if one is lost)."""
        self._require_topology()
        started = time.perf_counter()
        self._native.barrier()
        self.last_stats = OpStats(0, 0, time.perf_counter() - started)

    def all_gather_scalars(self, values: Sequence[float] | np.ndarray[Any, Any]) -> Any:
        """Every member's ``values``, by rank: a float64 array ``(world_size, len(values))``.

        A tiny payload carried by the commit vote itself (no data links): for losses,
        seeds and shared-randomness estimators such as SPSA. Every member passes as many
        values.
        """
        try:
            flat = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as error:
            raise InvalidArgumentError(
                f"values must be a flat sequence of numbers, got {error}", "values"
            ) from None
        if flat.ndim != 1:
            raise InvalidArgumentError(
                f"values must be a flat sequence of numbers, got shape {flat.shape}", "values"
            )
        self._require_topology()
        started = time.perf_counter()
        rows = self._native.all_gather_scalars(flat.tolist())
        self.last_stats = OpStats(0, 0, time.perf_counter() - started)
        return np.array(rows, dtype=np.float64).reshape(len(rows), flat.size)

    def pair_average(self, array: Any, step: int, *, group_size: int = 2) -> list[int]:
        """Average ``array`` in place within this peer's random group of ``step``.

        NoLoCo's primitive (arXiv 2506.10911): the members are shuffled by a permutation
        seeded with ``step`` (the same on every peer) and cut into groups of ``group_size``
        (leftovers join the last group); each group averages on its own, with no global
        collective. Returns the ranks of this peer's group, sorted. Every member calls it
        with the same ``step`` and ``group_size``.
        """
        step = check_int(step, "step", minimum=0, maximum=2**64 - 1)
        group_size = check_int(group_size, "group_size", minimum=2, maximum=USIZE_MAX)
        self._require_topology()
        buffer = intake(array, "array", writable=True, staging=self._staging)
        try:
            averaged = self._native.pair_average(buffer.host, buffer.dtype, step, group_size)
        except BaseException:
            buffer.done(False)
            raise
        buffer.done(True)
        self.last_stats = _stats(averaged.stats)
        return averaged.group

    def sync_state(
        self, named_arrays: Mapping[str, Any], revision: int | None = None
    ) -> SyncReport:
        """Make every member's named arrays equal to the most popular state, in place.

        Each peer hashes its arrays (xxh3-128 over dtype, shape and bytes); the most common
        ``(revision, hashes)`` wins (ties: the higher revision, then the lowest rank), and
        every out-of-date array is fetched from an up-to-date peer and verified against its
        hash. A newly joined peer calls it with the same names to receive the shared state.

        ``revision`` must grow by exactly one from this peer's last successful sync (any
        value on its first one); ``None`` takes that next revision (0 on the first sync),
        so libraries sharing one communicator need not count. The report says which
        revision won.
        """
        if not isinstance(named_arrays, Mapping):
            raise InvalidArgumentError(
                f"named_arrays must be a mapping of names to arrays, got "
                f"{type(named_arrays).__name__}",
                "named_arrays",
            )
        if revision is None:
            revision = 0 if self._revision is None else self._revision + 1
        revision = check_int(revision, "revision", minimum=0, maximum=2**64 - 1)
        self._require_topology()
        buffers: dict[str, Buffer] = {}
        try:
            for name, array in named_arrays.items():
                check_text(name, "named_arrays")
                buffers[name] = intake(array, "named_arrays", writable=True, staging=self._staging)
            raw = self._native.sync_state(
                [(name, b.host, b.dtype) for name, b in buffers.items()], revision
            )
        except BaseException:
            for b in buffers.values():
                b.done(False)
            raise
        fetched = tuple(raw.fetched)
        for name, b in buffers.items():
            b.done(name in fetched)
        report = SyncReport(
            revision=raw.revision,
            fetched=fetched,
            bytes_received=raw.bytes_received,
            bytes_sent=raw.bytes_sent,
            sources=tuple(raw.sources),
            state_hash=raw.state_hash,
            peers_out_of_date=raw.peers_out_of_date,
            world_size=raw.world_size,
        )
        self.last_stats = OpStats(report.bytes_sent, report.bytes_received, 0.0)
        self._revision = report.revision
        return report

    def close(self) -> None:
        """Finish the queued collectives, leave the topology and stop. Idempotent."""
        self._native.close()

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Communicator(id={self.id:#x}, rank={self.rank}, world_size={self.world_size}, "
            f"epoch={self.epoch})"
        )
