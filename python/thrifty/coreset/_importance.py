"""ImportanceSampler: draw training samples by score, and the loss weights that unbias it.

This module imports torch at the top; ``thrifty.coreset`` loads it only when the sampler
class is first touched, so that torch stays an optional extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from thrifty import _native
from thrifty._arrays import host_array
from thrifty._checks import check_int, check_length, check_real, check_seed
from thrifty.coreset._rs2 import checked_replicas
from thrifty.coreset._sample import (
    Float64Array,
    Int64Array,
    checked_scores,
    draw,
)
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError

_MASK = 2**64 - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed per (seed, epoch), mixed by SplitMix64's finaliser so nearby pairs differ."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch + 1) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


@dataclass(frozen=True)
class _Draw:
    """One epoch's draw and what its weights need."""

    epoch: int
    scores: Float64Array
    total: float
    mix: float
    indices: Int64Array
    threshold: float | None


def _mixed(scores: Float64Array, total: float, mix: float) -> Float64Array:
    if mix == 0.0:
        return scores
    return (1.0 - mix) * (scores / total) + mix / len(scores)


class ImportanceSampler(Sampler[int]):
    """Sample indices with probability proportional to a score, with loss weights.

    Each epoch draws ``num_samples`` indices from ``p_i = (1 - mix) s_i / sum(s) + mix / n``
    exactly, in Rust, for any n (``torch.multinomial`` and ``WeightedRandomSampler`` refuse
    more than 2^24 categories). The draw depends on ``seed``, the epoch and the scores only.
    With replacement the alias table of the scores is built once (12 bytes per sample, kept
    until the scores change) and each epoch then costs O(num_samples); without replacement
    each epoch scans the scores once, as :func:`thrifty.coreset.sample` does. With
    ``num_replicas`` R, rank r gets the items ``r, r + R, ...`` of the epoch's draw:
    disjoint shards, together the whole draw.

    Loss weights (:meth:`weights_for`) make ``(loss * w).mean()`` over the draw unbiased
    for the mean loss over all n samples:

    * ``replacement=True``: ``w_i = 1 / (n p_i)``.
    * ``replacement=False``: ``w_i = num_samples / (n pi_i)``, with ``pi_i`` the epoch's
      conditional inclusion probability ``1 - exp(-p_i tau)`` (rank conditioning, see
      :func:`thrifty.coreset.sample`).

    Scores can be refreshed with :meth:`update_scores` (per-sample losses, embedding
    leverage, :func:`thrifty.coreset.last_layer_gradient_norms`); a new draw uses them from
    the next ``iter()``, while the current epoch's weights stay those of its own draw.
    ``mix > 0`` keeps every sample drawable when scores come from losses that can be 0
    (Katharopoulos and Fleuret, arXiv 1803.00942, mix with the uniform distribution too).

    Parameters
    ----------
    scores : 1-D array or CPU tensor, length n
        Non-negative, finite, not all zero.
    num_samples : int
        Draws per epoch (all ranks together).
    replacement : bool
        Draw with replacement (default) or without.
    seed : int
    num_replicas, rank : int
        As in ``DistributedSampler``.
    mix : float
        In [0, 1]: the weight of the uniform distribution in ``p``. Default 0.

    Examples
    --------
    >>> import torch
    >>> from thrifty import coreset
    >>> sampler = coreset.ImportanceSampler(torch.tensor([1.0, 0.0, 3.0]), 4, seed=0)
    >>> indices = list(sampler)
    >>> sorted(set(indices) - {0, 2}), len(indices)
    ([], 4)
    >>> sampler.weights_for(torch.tensor([0, 2])).tolist()
    [1.3333333730697632, 0.4444444477558136]
    """

    def __init__(
        self,
        scores: Any,
        num_samples: int,
        *,
        replacement: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        mix: float = 0.0,
    ) -> None:
        self.num_samples = check_length(num_samples, "num_samples", minimum=0)
        if not isinstance(replacement, (bool, np.bool_)):
            raise InvalidArgumentError(
                f"replacement must be a bool, got {replacement!r}", "replacement"
            )
        self.replacement = bool(replacement)
        self.seed = check_seed(seed)
        self.num_replicas, self.rank = checked_replicas(num_replicas, rank)
        self.mix = check_real(mix, "mix", low=0.0, high=1.0)
        self.epoch = 0
        self._scores, self._total = self._checked(scores, None)
        self._draw: _Draw | None = None
        self._table: _native.CoresetAliasTable | None = None
        self._table_scores: Float64Array | None = None

    def _checked(self, scores: Any, n: int | None) -> tuple[Float64Array, float]:
        array = checked_scores(scores)
        if n is not None and len(array) != n:
            raise ShapeError(f"scores must have length {n}, got shape {array.shape}", "scores")
        if not np.all(np.isfinite(array)):
            raise NonFiniteError("scores must be finite, got NaN or infinity", "scores")
        if array.size == 0:
            raise ShapeError("scores must not be empty, got shape (0,)", "scores")
        if array.min() < 0:
            raise InvalidArgumentError("scores must be non-negative", "scores")
        total = float(array.sum())
        if total <= 0.0:
            raise InvalidArgumentError("scores must not all be zero", "scores")
        if not self.replacement:
            drawable = len(array) if self.mix > 0 else int(np.count_nonzero(array))
            if self.num_samples > drawable:
                raise InvalidArgumentError(
                    f"num_samples must be at most the number of drawable samples "
                    f"({drawable}) without replacement, got {self.num_samples}",
                    "num_samples",
                )
        return array, total

    @property
    def n(self) -> int:
        return len(self._scores)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; its draw depends on ``seed``, ``epoch`` and the scores."""
        self.epoch = check_int(epoch, "epoch", minimum=0)

    def update_scores(self, scores: Any) -> None:
        """Replace the scores (same length); the next ``iter()`` draws from them."""
        self._scores, self._total = self._checked(scores, self.n)

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.num_replicas))

    def epoch_draw(self) -> Int64Array:
        """The whole draw of the current epoch (all ranks), drawing it if needed."""
        current = self._draw
        stale = current is None or current.epoch != self.epoch or current.scores is not self._scores
        if stale:
            seed = epoch_seed(self.seed, self.epoch)
            threshold: float | None = None
            if self.replacement:
                # The table is built once per set of scores and drawn from every epoch:
                # O(n) once, then O(num_samples) per epoch.
                if self._table is None or self._table_scores is not self._scores:
                    p = _mixed(self._scores, self._total, self.mix)
                    self._table = _native.CoresetAliasTable(p)
                    self._table_scores = self._scores
                indices = self._table.draw(self.num_samples, seed)
            else:
                p = _mixed(self._scores, self._total, self.mix)
                indices, _, threshold = draw(p, self.num_samples, False, seed)
            current = _Draw(self.epoch, self._scores, self._total, self.mix, indices, threshold)
            self._draw = current
        assert current is not None
        return current.indices

    def __iter__(self) -> Iterator[int]:
        shard = self.epoch_draw()[self.rank :: self.num_replicas]
        return iter(shard.tolist())

    def weights_for(self, indices: Any, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Loss weights for ``indices`` (from the current epoch's draw), as a torch tensor.

        With replacement ``1 / (n p_i)``; without, ``num_samples / (n pi_i)``. Multiply the
        per-sample losses by them and take the mean.
        """
        if self._draw is None or self._draw.epoch != self.epoch:
            self.epoch_draw()
        current = self._draw
        assert current is not None
        index = host_array(indices, "indices", kinds="iu", dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.n):
            raise InvalidArgumentError(
                f"indices must lie in [0, {self.n}), got values in [{index.min()}, {index.max()}]",
                "indices",
            )
        n = len(current.scores)
        p = (1.0 - current.mix) * current.scores[index] / current.total + current.mix / n
        if self.replacement:
            weights = 1.0 / (n * p)
        else:
            tau = current.threshold
            assert tau is not None
            # draw() saw p scaled by the total when mix == 0; tau is in those units.
            scale = current.total if current.mix == 0.0 else 1.0
            pi = np.ones_like(p) if tau == float("inf") else -np.expm1(-p * scale * tau)
            weights = self.num_samples / (n * pi)
        return torch.from_numpy(np.ascontiguousarray(weights)).to(dtype)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and scores, to resume from."""
        return {"epoch": self.epoch, "scores": torch.from_numpy(self._scores.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.update_scores(state["scores"])
        self.set_epoch(state["epoch"])


__all__ = ["ImportanceSampler", "epoch_seed"]
