"""The same calls as :class:`Communicator`, over a ``torch.distributed`` process group.

Training code written against thrifty.collective (DiLoCo and its family) runs unchanged on
Gloo or NCCL launched by ``torchrun``: pass ``TorchDistributed()`` where a ``Communicator``
would go. torch.distributed has no membership changes, so ``update_topology()`` only checks
that the group is initialised, and a lost peer surfaces as torch's own error.

What differs, by design of torch.distributed:

- ``quantize=`` is not available (it is a property of thrifty's own wire protocol);
- ``pair_average`` uses the same seeded pairing as thrifty (``pairing_groups``), exchanging
  with point-to-point sends, and ``sync_state`` broadcasts every array that differs from the
  most popular state from the lowest rank that holds it.

Examples
--------
>>> import numpy as np, os, torch.distributed as dist
>>> from thrifty.collective import TorchDistributed
>>> os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29512")
>>> dist.init_process_group("gloo", rank=0, world_size=1)
>>> comm = TorchDistributed()
>>> x = np.arange(4, dtype=np.float32)
>>> comm.all_reduce(x, op="sum"); x.tolist()
[0.0, 1.0, 2.0, 3.0]
>>> dist.destroy_process_group()
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty import _native
from thrifty._checks import check_choice
from thrifty._extras import require
from thrifty.collective._pairing import pairing_groups
from thrifty.collective._state_hash import state_hash
from thrifty.errors import InvalidArgumentError


@dataclass(frozen=True)
class TorchSyncReport:
    """What ``TorchDistributed.sync_state`` did on this rank."""

    revision: int
    fetched: list[str]
    peers_out_of_date: int
    world_size: int


def _tensor(array: Any) -> Any:
    torch = require("torch")
    if isinstance(array, torch.Tensor):
        return array
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    raise InvalidArgumentError(
        f"array must be a numpy array or a torch tensor, got {type(array).__name__}", "array"
    )


class TorchDistributed:
    """A ``torch.distributed`` process group behind thrifty.collective's calls.

    Parameters
    ----------
    group
        The process group; ``None`` is the default group, which must be initialised.
    """

    def __init__(self, group: Any = None) -> None:
        self._dist = require("torch.distributed")
        if not self._dist.is_initialized():
            raise InvalidArgumentError(
                "torch.distributed is not initialised: call init_process_group first", "group"
            )
        self.group = group
        self._revision: int | None = None

    @contextmanager
    def _staged(self, array: Any) -> Iterator[Any]:
        """``array`` as a tensor the backend takes, written back when it had to move.

        NCCL only moves CUDA tensors: NumPy arrays and CPU tensors (DiLoCo's counters, SPSA's
        scalars) go through the current CUDA device and back.
        """
        t = _tensor(array)
        if t.device.type == "cuda" or self._dist.get_backend(self.group) != "nccl":
            yield t
            return
        torch = require("torch")
        moved = t.to(torch.device("cuda", torch.cuda.current_device()))
        yield moved
        t.copy_(moved)

    @property
    def rank(self) -> int:
        return int(self._dist.get_rank(self.group))

    @property
    def world_size(self) -> int:
        return int(self._dist.get_world_size(self.group))

    def connect(self) -> None:
        """Nothing to do: torch.distributed connected in ``init_process_group``."""

    def update_topology(self) -> None:
        """torch.distributed groups are fixed: only checks the group is still there."""
        if not self._dist.is_initialized():
            raise InvalidArgumentError("the process group was destroyed", "group")

    def all_reduce(
        self, array: Any, op: str = "sum", quantize: str | None = None, block: int = 64
    ) -> None:
        """In place, like ``Communicator.all_reduce``; ``avg`` on integers floors.

        Float sums add in thrifty's ring order (see ``_ring_order_sum``), so a training run
        gives the same bits over Gloo, NCCL or thrifty's own transport at one world size.
        """
        del block
        check_choice(op, "op", _native.REDUCE_OPS)
        if quantize is not None:
            raise InvalidArgumentError(
                "quantize needs thrifty's own transport (collective.Communicator)", "quantize"
            )
        with self._staged(array) as t:
            self._all_reduce(t, op)

    def _all_reduce(self, t: Any, op: str) -> None:
        if op in ("sum", "avg") and t.is_floating_point() and self.world_size > 1:
            self._ring_order_sum(t, average=op == "avg")
            return
        reduce_op = {
            "sum": self._dist.ReduceOp.SUM,
            "avg": self._dist.ReduceOp.SUM,
            "max": self._dist.ReduceOp.MAX,
            "min": self._dist.ReduceOp.MIN,
        }[op]
        self._dist.all_reduce(t, op=reduce_op, group=self.group)
        if op == "avg":
            # Integers floor, as thrifty's own transport does; floats divide.
            if t.is_floating_point():
                t.div_(self.world_size)
            else:
                t.floor_divide_(self.world_size)

    def _ring_order_sum(self, t: Any, *, average: bool) -> None:
        """A float sum with exactly the additions of thrifty's ring, so both transports give
        the same bits (float addition is not associative, and Gloo and NCCL each pick their
        own order).

        Slice ``s`` of ``n`` (elements ``len*s//n .. len*(s+1)//n``) is folded as
        ``((x_s + x_{s+1}) + ...) + x_{s-1}`` over ranks, half precisions rounding once per
        addition; ``avg`` divides the sum by ``n`` once. All-to-all then all-gather moves
        what a ring moves: ``2 (n-1)/n`` of the array per rank.
        """
        torch = require("torch")
        n, rank = self.world_size, self.rank
        flat = t.reshape(-1) if t.is_contiguous() else t.contiguous().reshape(-1)
        bounds = [flat.numel() * j // n for j in range(n + 1)]
        sizes = [bounds[j + 1] - bounds[j] for j in range(n)]
        mine = torch.empty(n * sizes[rank], dtype=flat.dtype, device=flat.device)
        self._dist.all_to_all_single(mine, flat, [sizes[rank]] * n, sizes, group=self.group)
        parts = mine.view(n, sizes[rank])
        wide = torch.float64 if flat.dtype == torch.float64 else torch.float32
        total = parts[rank].to(wide)
        for j in range(1, n):
            total = (total + parts[(rank + j) % n].to(wide)).to(flat.dtype).to(wide)
        if average:
            total = total / torch.full_like(total, n)
        widest = max(sizes)
        padded = torch.zeros(widest, dtype=flat.dtype, device=flat.device)
        padded[: sizes[rank]] = total.to(flat.dtype)
        gathered = torch.empty(n * widest, dtype=flat.dtype, device=flat.device)
        self._dist.all_gather_into_tensor(gathered, padded, group=self.group)
        rows = gathered.view(n, widest)
        result = torch.cat([rows[j, : sizes[j]] for j in range(n)])
        t.copy_(result.view(t.shape))

    def broadcast(self, array: Any, root: int) -> None:
        if not 0 <= root < self.world_size:
            raise InvalidArgumentError(f"root must be in 0..{self.world_size}, got {root}", "root")
        with self._staged(array) as t:
            self._dist.broadcast(t, src=root, group=self.group)

    def all_gather(self, array: Any) -> Any:
        """Every rank's array, stacked: shape ``(world_size, *array.shape)``."""
        torch = require("torch")
        original = _tensor(array)
        with self._staged(original.clone()) as t:
            # Gathered flat: Gloo wants the output as one run of world_size inputs.
            flat = torch.empty(self.world_size * t.numel(), dtype=t.dtype, device=t.device)
            self._dist.all_gather_into_tensor(flat, t.contiguous().reshape(-1), group=self.group)
        out = flat.view(self.world_size, *original.shape).to(original.device)
        return out.numpy() if isinstance(array, np.ndarray) else out

    def barrier(self) -> None:
        self._dist.barrier(group=self.group)

    def all_gather_scalars(self, values: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
        gathered = self.all_gather(np.asarray(values, dtype=np.float64))
        return np.asarray(gathered, dtype=np.float64)

    def pair_average(self, array: Any, step: int, group_size: int = 2) -> list[int]:
        """Average with the partners thrifty's seeded pairing gives this rank at ``step``."""
        torch = require("torch")
        groups = pairing_groups(self.world_size, step, group_size)
        mine = next(g for g in groups if self.rank in g)
        with self._staged(array) as t:
            copies = {self.rank: t.clone()}
            ops = []
            for other in mine:
                if other != self.rank:
                    copies[other] = torch.empty_like(t)
                    ops.append(self._dist.P2POp(self._dist.isend, t, other, self.group))
                    ops.append(self._dist.P2POp(self._dist.irecv, copies[other], other, self.group))
            if ops:
                for request in self._dist.batch_isend_irecv(ops):
                    request.wait()
            # Rank order, so every member of the group computes the same bits.
            total = copies[mine[0]].clone()
            for other in mine[1:]:
                total += copies[other]
            t.copy_(total / len(mine) if t.is_floating_point() else total // len(mine))
        return list(mine)

    def sync_state(
        self, named_arrays: Mapping[str, Any], revision: int | None = None
    ) -> TorchSyncReport:
        """Adopt the most popular (revision, state); differing arrays are broadcast from the
        lowest rank holding it. ``revision=None`` is the one after this object's last sync
        (0 on the first)."""
        if revision is None:
            revision = 0 if self._revision is None else self._revision + 1
        names = sorted(named_arrays)
        hashes = tuple(state_hash(_tensor(named_arrays[n]).detach().cpu()) for n in names)
        summary = (revision, hashes)
        summaries: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(summaries, summary, group=self.group)
        counts = Counter(summaries)
        winner_key = max(counts, key=lambda k: (counts[k], k[0], -summaries.index(k)))
        source = summaries.index(winner_key)
        fetched = []
        for i, name in enumerate(names):
            if any(s[1][i] != winner_key[1][i] for s in summaries):
                self.broadcast(named_arrays[name], source)
                if summary[1][i] != winner_key[1][i]:
                    fetched.append(name)
        self._revision = int(winner_key[0])
        return TorchSyncReport(
            revision=int(winner_key[0]),
            fetched=fetched,
            peers_out_of_date=sum(1 for s in summaries if s != winner_key),
            world_size=self.world_size,
        )

    def close(self) -> None:
        """The process group belongs to the caller; nothing to release here."""

    def __enter__(self) -> TorchDistributed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
