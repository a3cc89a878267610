"""Traffic and waiting, per sync and in total: what a low-communication method is judged by."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from thrifty.errors import InvalidArgumentError


@dataclass(frozen=True)
class SyncRecord:
    """One sync of one fragment (DiLoCo) or one gossip round (NoLoCo).

    Attributes
    ----------
    step
        Inner step at which the exchange was launched.
    fragment
        Fragment index (0 without fragments).
    bytes_sent
        Bytes this worker sent for it (measured on thrifty's transport; for
        torch.distributed what the ring or all-gather it used sends).
    seconds
        Wall time of the exchange itself, retries included.
    wait_s
        Of that, the time the training loop spent blocked on it.
    world_size, contributors
        Peers taking part, and how many of them contributed an update (a worker that just
        joined contributes from its next sync).
    retries
        Exchanges redone after a peer was lost.
    """

    step: int
    fragment: int
    bytes_sent: int
    seconds: float
    wait_s: float
    world_size: int
    contributors: int
    retries: int


@dataclass
class CommStats:
    """Running totals, plus ``history`` with one :class:`SyncRecord` per sync."""

    bytes_sent: int = 0
    syncs: int = 0
    peak_bytes_per_sync: int = 0
    comm_wait_s: float = 0.0
    history: list[SyncRecord] = field(default_factory=list)

    def record(self, record: SyncRecord) -> None:
        self.bytes_sent += record.bytes_sent
        self.syncs += 1
        self.peak_bytes_per_sync = max(self.peak_bytes_per_sync, record.bytes_sent)
        self.history.append(record)

    def waited(self, seconds: float) -> None:
        self.comm_wait_s += seconds

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON and checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommStats:
        """Rebuild the totals written by :meth:`as_dict` (a checkpoint)."""
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(
                f"data must be a dict from CommStats.as_dict, got {type(data).__name__}", "data"
            )
        try:
            history = [SyncRecord(**record) for record in data.get("history", [])]
            return cls(
                bytes_sent=int(data["bytes_sent"]),
                syncs=int(data["syncs"]),
                peak_bytes_per_sync=int(data["peak_bytes_per_sync"]),
                comm_wait_s=float(data["comm_wait_s"]),
                history=history,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise InvalidArgumentError(
                f"data is not a CommStats dict: {type(error).__name__}: {error}", "data"
            ) from None
