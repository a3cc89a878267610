"""One view of the two transports DiLoCo and its family run over.

A :class:`thrifty.collective.Communicator` (elastic: peers join and leave, with epochs), a
:class:`thrifty.collective.TorchDistributed`, or a bare ``torch.distributed`` process group,
which is wrapped in a ``TorchDistributed``. The training code above this module never asks
which one it has, except through :class:`Link`'s few properties.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from thrifty._extras import require
from thrifty.errors import CollectiveAborted, InvalidArgumentError, PeerLost

T = TypeVar("T")

# Calls every transport must answer for DiLoCo, NoLoCo and SPSA.
_NEEDED = ("rank", "world_size", "all_reduce", "all_gather", "all_gather_scalars", "sync_state")

#: How many times one exchange is retried after a lost peer before giving up.
MAX_RETRIES = 8


def as_transport(transport: Any) -> Any:
    """``transport`` itself, or a ``TorchDistributed`` around a torch process group."""
    if all(hasattr(transport, name) for name in _NEEDED):
        return transport
    if transport is not None and _is_process_group(transport):
        from thrifty.collective import TorchDistributed

        return TorchDistributed(transport)
    raise InvalidArgumentError(
        "transport must be a thrifty.collective.Communicator, a TorchDistributed or a "
        f"torch.distributed process group, got {type(transport).__name__}",
        "transport",
    )


def _is_process_group(value: Any) -> bool:
    dist = require("torch.distributed")
    return isinstance(value, dist.ProcessGroup)


def epoch(transport: Any) -> int:
    """The membership epoch; fixed groups (torch.distributed) never change it."""
    return int(getattr(transport, "epoch", 0))


def is_elastic(transport: Any) -> bool:
    """Whether peers can join and leave (thrifty's own transport)."""
    return hasattr(transport, "epoch")


def wire_bytes(transport: Any, estimate: int) -> int:
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
    transport: Any, call: Callable[[], T], on_new_world: Callable[[], None] | None = None
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


def recover(transport: Any) -> None:
    """``update_topology()`` until it succeeds: a vote can itself lose a peer."""
    for attempt in range(MAX_RETRIES):
        try:
            transport.update_topology()
            return
        except PeerLost:
            if attempt == MAX_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
