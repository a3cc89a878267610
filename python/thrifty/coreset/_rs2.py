"""RS2Sampler: Repeated Random Sampling, a fresh slice of a reshuffled stream every epoch.

This module imports torch at the top; ``thrifty.coreset`` loads it only when the sampler
class is first touched, so that torch stays an optional extra.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from thrifty import _native
from thrifty._checks import check_int, check_length, check_real, check_seed
from thrifty.errors import InvalidArgumentError


def checked_replicas(num_replicas: Any, rank: Any) -> tuple[int, int]:
    """``num_replicas >= 1`` and ``0 <= rank < num_replicas``, naming the bad one."""
    replicas = check_int(num_replicas, "num_replicas", minimum=0)
    if replicas < 1:
        raise InvalidArgumentError(
            f"num_replicas must be at least 1, got {replicas}", "num_replicas"
        )
    index = check_int(rank, "rank", minimum=0)
    if index >= replicas:
        raise InvalidArgumentError(
            f"rank must be in [0, num_replicas) = [0, {replicas}), got {index}", "rank"
        )
    return replicas, index


class RS2Sampler(Sampler[int]):
    """Each epoch, the next ``fraction`` of the data from an endless reshuffled stream.

    Repeated Random Sampling without replacement (RS2, Okanovic et al., arXiv 2305.18424):
    instead of a fixed coreset, every epoch trains on a new random subset, and across epochs
    the subsets walk through the whole data before any index comes back.

    The stream is the concatenation of passes ``pass_0, pass_1, ...``, each a permutation
    of ``range(n)``, so each block ``j n .. (j + 1) n - 1`` of the stream holds every index
    exactly once, whichever epochs it is split across. Epoch ``e`` takes stream items
    ``e L .. (e + 1) L - 1``. ``pass_j`` is the permutation ``P_j`` seeded by ``(seed, j)``
    (drawn in Rust, in parallel, the same for any thread count), except that an epoch which
    straddles passes ``j - 1`` and ``j`` takes, from ``P_j``, its first items that it does not
    already hold; the rest of ``P_j`` follows in order (``pass_j`` is then uniform among the
    permutations that meet this constraint). So no epoch repeats an index either.
    (Independent reshuffles alone cannot give both: any n consecutive items being a
    permutation would force the stream to repeat one permutation for ever.) Every epoch is a
    function of ``seed`` and the epoch, built from one or two permutations when
    ``fraction <= 1/2``; the one or two passes the current epoch needs are cached.

    ``L = ceil(fraction * n)``, rounded up to a multiple of ``num_replicas`` (down with
    ``drop_last``) by taking more (fewer) stream items, so the shards need no padding: rank
    ``r`` gets items ``r, r + R, r + 2R, ...`` of the epoch's slice. Shards are disjoint and
    their union is the slice.

    Parameters
    ----------
    n : int
        Size of the data set, ``>= 1``.
    fraction : float
        In (0, 1]: the share of the data per epoch (the paper's selection ratio ``r``; it
        reports 10% as a good trade-off for ImageNet).
    seed : int
        In ``[0, 2**64)``; every epoch is a function of ``seed`` and the epoch alone.
    num_replicas, rank : int
        Data-parallel world size and this process's rank, as in ``DistributedSampler``.
    drop_last : bool
        Round the epoch's slice down, not up, to a multiple of ``num_replicas``.

    Examples
    --------
    >>> from thrifty import coreset
    >>> sampler = coreset.RS2Sampler(10, 0.3, seed=0)
    >>> epochs = []
    >>> for epoch in range(3):
    ...     sampler.set_epoch(epoch)
    ...     epochs.extend(sampler)
    >>> len(sampler), sorted(epochs[:9]) == sorted(set(epochs[:9]))
    (3, True)
    """

    def __init__(
        self,
        n: int,
        fraction: float,
        *,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        size = check_length(n, "n", minimum=0)
        if size < 1:
            raise InvalidArgumentError(f"n must be at least 1, got {size}", "n")
        self.n = size
        self.fraction = check_real(fraction, "fraction", low=0.0, high=1.0, low_open=True)
        self.seed = check_seed(seed)
        self.num_replicas, self.rank = checked_replicas(num_replicas, rank)
        self.drop_last = bool(drop_last)
        wanted = math.ceil(self.fraction * size)
        replicas = self.num_replicas
        if self.drop_last:
            self.slice_length = wanted // replicas * replicas
        else:
            self.slice_length = -(-wanted // replicas) * replicas
        if self.slice_length > size:
            raise InvalidArgumentError(
                f"fraction * n = {self.fraction} * {size} rounded up to a multiple of "
                f"num_replicas ({replicas}) is more than n: an epoch would repeat indices; "
                "lower fraction or set drop_last",
                "fraction",
            )
        if self.slice_length == 0:
            raise InvalidArgumentError(
                f"fraction * n = {self.fraction} * {size} gives fewer items than num_replicas "
                f"({replicas}) per epoch, and drop_last leaves none; raise fraction",
                "fraction",
            )
        self.epoch = 0
        self._passes: dict[int, np.ndarray[Any, Any]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; its slice depends on ``seed`` and ``epoch`` only."""
        self.epoch = check_int(epoch, "epoch", minimum=0)

    def __len__(self) -> int:
        return self.slice_length // self.num_replicas

    def _raw(self, j: int) -> np.ndarray[Any, Any]:
        """The independent permutation ``P_j`` of ``(seed, j)``."""
        return _native.coreset_permutation(self.n, self.seed, j % 2**64)

    def _straddle(self, j: int) -> tuple[int, int]:
        """Where, in pass ``j``, the epoch that runs into pass ``j + 1`` starts (``n`` when
        an epoch ends exactly at the boundary), and how many items it takes from ``j + 1``."""
        end = (j + 1) * self.n
        start = end // self.slice_length * self.slice_length
        if start == end:
            return self.n, 0
        return start - j * self.n, start + self.slice_length - end

    def _pass(self, j: int) -> np.ndarray[Any, Any]:
        """Pass ``j`` of the stream: ``P_j``, except that an epoch straddling the boundary
        with pass ``j - 1`` takes from ``P_j`` its first items not already in that epoch.

        The fix-up moves only items of ``P_j[:L]`` (the b items taken skip at most the
        ``L - b`` items of the epoch's old part), so ``pass_j[q] = P_j[q]`` for ``q >= L``:
        when the straddling epoch starts at or after position ``L`` of the previous pass, the
        previous pass need not be built. That holds whenever ``2 L <= n + 1``; otherwise the
        chain goes back to the first pass that does not depend on its predecessor.
        """
        if j in self._passes:
            return self._passes[j]
        first = j
        while (
            first > 0
            and first - 1 not in self._passes
            and self._straddle(first - 1)[0] < self.slice_length
        ):
            first -= 1
        order: np.ndarray[Any, Any] | None = None
        for i in range(first, j + 1):
            raw = self._raw(i)
            tail_start, head = self._straddle(i - 1) if i > 0 else (self.n, 0)
            if head == 0:
                order = raw
                continue
            previous = order if order is not None else self._passes.get(i - 1)
            if previous is None:
                previous = self._raw(i - 1)
            taken = np.zeros(self.n, dtype=bool)
            taken[previous[tail_start:]] = True
            front = raw[: self.slice_length]
            fresh = np.flatnonzero(~taken[front])[:head]
            keep = np.ones(len(front), dtype=bool)
            keep[fresh] = False
            order = np.concatenate([front[fresh], front[keep], raw[self.slice_length :]])
        assert order is not None
        self._passes[j] = order
        return order

    def epoch_slice(self, epoch: int | None = None) -> np.ndarray[Any, Any]:
        """The whole slice of ``epoch`` (default: the current one), before sharding."""
        e = self.epoch if epoch is None else check_int(epoch, "epoch", minimum=0)
        start = e * self.slice_length
        stop = start + self.slice_length
        first, last = start // self.n, (stop - 1) // self.n
        # Keep the passes this epoch needs (one or two) and the one before, which the next
        # epoch needs when fraction > 1/2 makes each pass depend on its predecessor.
        self._passes = {j: p for j, p in self._passes.items() if first - 1 <= j <= last}
        pieces = []
        for j in range(first, last + 1):
            low = max(start, j * self.n) - j * self.n
            high = min(stop, (j + 1) * self.n) - j * self.n
            pieces.append(self._pass(j)[low:high])
        return np.concatenate(pieces).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        shard = self.epoch_slice()[self.rank :: self.num_replicas]
        return iter(shard.tolist())

    def state_dict(self) -> dict[str, int]:
        """The epoch, to resume from (the rest follows from the constructor's arguments)."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(state["epoch"])


__all__ = ["RS2Sampler", "checked_replicas"]
