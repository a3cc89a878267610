"""A batch sampler whose batch size follows a controller, changing in the middle of an epoch."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from thrifty._checks import check_int
from thrifty.errors import InvalidArgumentError

__all__ = ["AdaptiveBatchSampler"]


class _HasBatchSize(Protocol):
    @property
    def batch_size(self) -> int: ...


class AdaptiveBatchSampler:
    """Yield index lists whose length is the controller's batch size when each is drawn.

    The indices come from ``sampler`` in its order, each exactly once per epoch: a change of
    batch size in the middle of an epoch only changes where the next cut falls. The last
    batch of an epoch may be shorter unless ``drop_last``. Pass it as
    ``DataLoader(dataset, batch_sampler=...)``; the loader asks for the next batch only when
    the previous one is consumed (``num_workers=0``), so a new size applies at the next
    batch. With workers, each prefetches ``prefetch_factor`` batches, which keep the size
    they were cut at.

    It has no ``len()``: the number of batches left depends on future batch sizes.

    :meth:`state_dict` records how many indices of the current epoch were handed out, and
    after :meth:`load_state_dict` the next iteration skips them, so a run restored in the
    middle of an epoch neither repeats nor drops samples, provided ``sampler`` yields the
    same order again (a seeded sampler after the same ``set_epoch``).

    Parameters
    ----------
    sampler
        Any iterable of dataset indices (``SequentialSampler``, ``RandomSampler``,
        ``DistributedSampler``); its ``set_epoch`` is forwarded when it has one.
    controller
        Anything with a ``batch_size`` attribute, e.g.
        :class:`thrifty.schedule.AdaptiveBatchSize`.
    num_replicas
        Under DDP with a ``DistributedSampler`` per rank, the number of ranks: each rank
        draws ``ceil(batch_size / num_replicas)`` indices, so that ``batch_size`` stays global.
    drop_last
        Drop an epoch's last batch when it is shorter than the current size.

    Examples
    --------
    >>> from thrifty.schedule import AdaptiveBatchSampler
    >>> class Fixed:
    ...     batch_size = 2
    >>> controller = Fixed()
    >>> batches = iter(AdaptiveBatchSampler(range(7), controller))
    >>> next(batches)
    [0, 1]
    >>> controller.batch_size = 4
    >>> list(batches)
    [[2, 3, 4, 5], [6]]
    """

    def __init__(
        self,
        sampler: Iterable[int],
        controller: _HasBatchSize,
        *,
        num_replicas: int = 1,
        drop_last: bool = False,
    ) -> None:
        if not isinstance(sampler, Iterable):
            raise InvalidArgumentError(
                f"sampler must be an iterable of indices, got {type(sampler).__name__}",
                "sampler",
            )
        if not hasattr(controller, "batch_size"):
            raise InvalidArgumentError(
                f"controller must have a batch_size attribute, got {type(controller).__name__}",
                "controller",
            )
        self.sampler = sampler
        self.controller = controller
        self.num_replicas = check_int(num_replicas, "num_replicas", minimum=1)
        self.drop_last = bool(drop_last)
        self._consumed = 0  # indices of the current epoch handed out in batches
        self._skip = 0  # indices to pass over on the next iteration (a restored run)

    def current_size(self) -> int:
        """This rank's batch size for the next batch."""
        size = self.controller.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidArgumentError(
                f"controller.batch_size must be a positive int, got {size!r}", "controller"
            )
        return math.ceil(size / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped sampler (``DistributedSampler``, ...)."""
        set_epoch: Any = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        """The number of indices of the current epoch already handed out."""
        return {"consumed": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip the indices :meth:`state_dict` counted when the next epoch starts."""
        consumed = state.get("consumed") if isinstance(state, dict) else None
        if isinstance(consumed, bool) or not isinstance(consumed, int) or consumed < 0:
            raise InvalidArgumentError(
                f"state must hold a non-negative int 'consumed', got {state!r}", "state"
            )
        self._skip = consumed

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        self._consumed = skip
        batch: list[int] = []
        for position, index in enumerate(self.sampler):
            if position < skip:
                continue
            batch.append(int(index))
            if len(batch) >= self.current_size():
                self._consumed += len(batch)
                yield batch
                batch = []
        if batch and not (self.drop_last and len(batch) < self.current_size()):
            self._consumed += len(batch)
            yield batch
