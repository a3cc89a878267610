"""One view of the two transports DiLoCo and its family run over.

A :class:`thrifty.collective.Communicator` (elastic: peers join and leave, with epochs), a
:class:`thrifty.collective.TorchDistributed`, or a bare ``torch.distributed`` process group,
which is wrapped in a ``TorchDistributed``. The training code above this module never asks
which one it has, except through :class:`Link`'s few properties.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from thrifty._extras import require
from thrifty.errors import CollectiveAborted, InvalidArgumentError, PeerLost

if TYPE_CHECKING:
    import torch.distributed

    from thrifty.collective import Communicator

T = TypeVar("T")

#: How many times one exchange is retried after a lost peer before giving up.
MAX_RETRIES = 8


@runtime_checkable
class ScalarTransport(Protocol):
    """What :class:`~thrifty.diloco.SharedSeedSPSA` exchanges through: a few scalars per
    worker and step, the shared state, and the membership."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def all_gather_scalars(self, values: Sequence[float]) -> Any:
        """Every member's ``values``, by rank: ``(world_size, len(values))`` float64."""

    def sync_state(self, named_arrays: Mapping[str, Any], revision: int | None = None) -> Any:
        """Make every member's named arrays equal, in place; returns a sync report."""

    def update_topology(self) -> None:
        """Agree on the membership (a no-op for fixed groups)."""


@runtime_checkable
class Transport(ScalarTransport, Protocol):
    """What :class:`~thrifty.diloco.DiLoCo` and :class:`~thrifty.diloco.NoLoCo` exchange
    through.

    :class:`thrifty.collective.Communicator` (elastic: peers join and leave) and
    :class:`thrifty.collective.TorchDistributed` both are one; DiLoCo and NoLoCo also take
    a bare ``torch.distributed`` process group and wrap it in a ``TorchDistributed``.
    Anything else with these members works too; a transport with an ``epoch`` attribute
    is taken as elastic, and its lost peers are survived through ``update_topology``.

    Examples
    --------
    >>> from thrifty import collective, diloco
    >>> with collective.Coordinator(secret="s") as coordinator:
    ...     with collective.Communicator(coordinator.address, secret="s") as comm:
    ...         isinstance(comm, diloco.Transport), isinstance("tcp://host", diloco.Transport)
    (True, False)
    """

    def all_reduce(
        self, array: Any, *, op: str = "sum", quantize: str | None = None, block: int = 64
    ) -> None:
        """Reduce ``array`` over every member, in place."""

    def all_gather(self, array: Any) -> Any:
        """Every member's ``array``, stacked by rank."""

    def pair_average(self, array: Any, step: int, *, group_size: int = 2) -> list[int]:
        """Average ``array`` in place within this member's random group of ``step``."""


def as_transport(transport: Transport | torch.distributed.ProcessGroup) -> Transport:
    """``transport`` itself, or a ``TorchDistributed`` around a torch process group."""
    if isinstance(transport, Transport):
        return transport
    if transport is not None and _is_process_group(transport):
        from thrifty.collective import TorchDistributed

        return TorchDistributed(transport)
    raise InvalidArgumentError(
        "transport must be a thrifty.collective.Communicator, a TorchDistributed or a "
        f"torch.distributed process group, got {type(transport).__name__}",
        "transport",
    )


def check_scalar_transport(transport: object) -> ScalarTransport:
    """``transport``, refused by name unless it has what SPSA calls."""
    if not isinstance(transport, ScalarTransport):
        members = ("rank", "world_size", "all_gather_scalars", "sync_state", "update_topology")
        missing = [name for name in members if not hasattr(transport, name)]
        raise InvalidArgumentError(
            f"transport must be a thrifty.collective.Communicator or TorchDistributed "
            f"(it lacks {', '.join(missing)}), got {type(transport).__name__}",
            "transport",
        )
    return transport


def _is_process_group(value: Any) -> bool:
    dist = require("torch.distributed")
    return isinstance(value, dist.ProcessGroup)


def epoch(transport: object) -> int:
    """The membership epoch; fixed groups (torch.distributed) never change it."""
    return int(getattr(transport, "epoch", 0))


def is_elastic(transport: object) -> bool:
    """Whether peers can join and leave (thrifty's own transport)."""
    return hasattr(transport, "epoch")


def wire_bytes(transport: object, estimate: int) -> int:
    """Bytes the last call sent: measured on thrifty's transport, else ``estimate``.

    torch.distributed does not report its traffic, so the caller passes what a ring
    (or the all-gather it used) moves for that call.
    """
    stats = getattr(transport, "last_stats", None)
    if is_elastic(transport) and stats is not None:
        return int(stats.bytes_sent)
    return estimate


def ring_bytes(nbytes: int, world_size: int) -> int:
    """What one rank sends in a ring all-reduce of ``nbytes``: ``2 (n-1)/n`` of it."""
    return 2 * (world_size - 1) * nbytes // max(world_size, 1)


def with_retries(
    transport: ScalarTransport,
    call: Callable[[], T],
    on_new_world: Callable[[], None] | None = None,
) -> tuple[T, int]:
    """``call()``, redone after each lost peer once the survivors agree on a new world.

    Returns the result and how many retries it took. ``on_new_world`` runs after each
    ``update_topology()`` that changed the epoch (DiLoCo re-syncs its state there, so a
    peer admitted in the same vote takes part in the retry). Collectives restore their
    buffers when they fail, so ``call`` can simply run again.
    """
    retries = 0
    while True:
        try:
            return call(), retries
        except (PeerLost, CollectiveAborted):
            if not is_elastic(transport) or retries >= MAX_RETRIES:
                raise
        retries += 1
        before = epoch(transport)
        recover(transport)
        if epoch(transport) != before and on_new_world is not None:
            on_new_world()


def recover(transport: ScalarTransport) -> None:
    """``update_topology()`` until it succeeds: a vote can itself lose a peer."""
    for attempt in range(MAX_RETRIES):
        try:
            transport.update_topology()
            return
        except PeerLost:
            if attempt == MAX_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


if TYPE_CHECKING:

    def _both_transports_conform(ours: Communicator) -> Transport:
        # mypy checks that thrifty's elastic transport satisfies the protocol; as_transport's
        # TorchDistributed branch checks the other one.
        return ours
