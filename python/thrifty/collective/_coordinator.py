"""The coordinator: membership, topology votes and the commit vote of every collective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thrifty import _native
from thrifty._checks import check_positive
from thrifty.errors import InvalidArgumentError


def check_text(value: Any, argument: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"{argument} must be a string, got {type(value).__name__}", argument
        )


@dataclass(frozen=True)
class CoordinatorSnapshot:
    """What the coordinator knows at one moment (peer ids are the peers' ``Communicator.id``).

    Attributes
    ----------
    epoch
        The last committed epoch (0 before the first topology).
    members
        The committed view's members in ring order: the index is the rank.
    pending
        Connected peers that are not members yet, oldest first.
    broken
        Why the committed epoch cannot run collectives (a member was lost), or ``None``.
    forming
        The epoch of a view being built right now, or ``None``.
    asked
        The peers that asked for a topology update not decided yet.
    """

    epoch: int
    members: tuple[int, ...]
    pending: tuple[int, ...]
    broken: str | None
    forming: int | None
    asked: tuple[int, ...]


class Coordinator:
    """Serves membership and commit votes to every peer, from background threads.

    One coordinator per job, reachable by every peer: it decides the topology (the rank of
    every peer), and every collective ends in its commit vote, as in PCCL (arXiv 2505.14065).
    It holds no training data. It starts serving as soon as it is constructed; ``close()``
    (or leaving the ``with`` block) stops it. ``thrifty coordinator`` runs one from the
    command line.

    Parameters
    ----------
    bind
        ``host:port`` to listen on; port 0 picks a free one (see :attr:`address`).
    secret
        The pre-shared secret every peer must hold; default: ``THRIFTY_SECRET``.
    heartbeat_interval_s, heartbeat_timeout_s
        A peer silent for ``heartbeat_timeout_s`` is lost (at once if its connection
        closes); heartbeats are sent every ``heartbeat_interval_s`` on a quiet connection.
    fellows
        The other coordinators the peers were given (``host:port``). While this one has no
        world of its own it asks them first, and sends each peer to the one that has a
        live world: so a restarted primary does not split the world from its standby.

    Examples
    --------
    >>> from thrifty import collective
    >>> with collective.Coordinator("127.0.0.1:0", secret="s3cret") as coordinator:
    ...     host, port = coordinator.address.rsplit(":", 1)
    ...     print(host, coordinator.snapshot().members)
    127.0.0.1 ()
    """

    def __init__(
        self,
        bind: str = "127.0.0.1:0",
        *,
        secret: str | None = None,
        heartbeat_interval_s: float = 0.5,
        heartbeat_timeout_s: float = 5.0,
        fellows: Sequence[str] = (),
    ) -> None:
        check_text(bind, "bind")
        if isinstance(fellows, str):
            raise InvalidArgumentError("fellows must be a list of host:port strings", "fellows")
        for fellow in fellows:
            check_text(fellow, "fellows")
        check_text(secret, "secret", optional=True)
        interval = check_positive(heartbeat_interval_s, "heartbeat_interval_s")
        timeout = check_positive(heartbeat_timeout_s, "heartbeat_timeout_s")
        if timeout <= interval:
            raise InvalidArgumentError(
                f"heartbeat_timeout_s must exceed heartbeat_interval_s ({interval}), got {timeout}",
                "heartbeat_timeout_s",
            )
        self._native = _native.Coordinator(bind, secret, interval, timeout, fellows=list(fellows))
        self._address = self._native.address()

    @property
    def address(self) -> str:
        """The ``host:port`` actually bound: give it to every peer's ``Communicator``."""
        return self._address

    def snapshot(self) -> CoordinatorSnapshot:
        """The membership right now (for tests, logs and the command line)."""
        raw = self._native.snapshot()
        return CoordinatorSnapshot(
            epoch=raw.epoch,
            members=tuple(raw.members),
            pending=tuple(raw.pending),
            broken=raw.broken,
            forming=raw.forming,
            asked=tuple(raw.asked),
        )

    def close(self) -> None:
        """Stop serving, drop every connection and join the threads. Idempotent."""
        self._native.close()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Coordinator(address={self._address!r})"
