"""Each low-communication method as one worker trains with it, beside DDP.

A trainer wraps one worker's model, its inner AdamW and its communicator, and takes one
inner step per batch; :func:`make_trainer` builds the trainer of a method. The methods
(:data:`METHODS`):

``ddp``
    The baseline: each step, every worker all-reduces (average) its fp32 gradients over
    the same transport, then steps its AdamW, so all models stay equal (DDP's arithmetic).
``diloco``
    DiLoCo (arXiv 2311.08105): ``H`` inner steps, then an fp32 all-reduce of the
    pseudo-gradients and an outer Nesterov step (lr 0.7, momentum 0.9).
``streaming-fp32``, ``streaming-fp4``
    Streaming DiLoCo (arXiv 2501.18512): 4 strided fragments, each synced every ``H``
    steps in turn, launched 5 steps before they are applied (overlapped with compute), in
    fp32 or in thrifty's fp4 (E2M1) quantized all-reduce.
``noloco``
    NoLoCo (arXiv 2506.10911): every ``H`` steps, gossip with one random partner (no
    all-reduce), outer lr 0.7 and momentum 0.5.
``spsa``
    Shared-seed SPSA ("Just One Byte", arXiv 2306.10015) from the same initial weights:
    a zeroth-order *fine-tuning* method, here asked to pre-train from scratch, so its loss
    stays far above the others. It is in the table for its bytes, not its loss.

Each trainer's :meth:`finish` reports the bytes it sent (measured by thrifty's transport,
except SPSA, whose three float64 values per step ride on the coordinator's commit vote and
are counted as 24 bytes), its largest single sync, its syncs, the time blocked on
communication, its retried syncs and the world sizes it saw.

Examples
--------
>>> from benches.workloads import diloco_trainers
>>> diloco_trainers.METHODS
('ddp', 'diloco', 'streaming-fp32', 'streaming-fp4', 'noloco', 'spsa')
>>> diloco_trainers.describe("streaming-fp4", sync_every=25)
'Streaming DiLoCo H=25 F=4 tau=5 fp4'
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from benches.workloads import diloco_language_model as workload
from thrifty import diloco
from thrifty.errors import InvalidArgumentError

METHODS = ("ddp", "diloco", "streaming-fp32", "streaming-fp4", "noloco", "spsa")

#: DiLoCo's outer SGD (arXiv 2311.08105).
OUTER_LR = 0.7
OUTER_MOMENTUM = 0.9
#: Streaming DiLoCo (arXiv 2501.18512): fragments and the overlap tau, in inner steps.
FRAGMENTS = 4
OVERLAP_STEPS = 5
#: NoLoCo (arXiv 2506.10911): outer lr as DiLoCo's, momentum 0.5.
NOLOCO_BETA = 0.5
#: SPSA: MeZO's eps (arXiv 2305.17333); lr picked from 1e-3, 1e-2, 3e-2 on this workload
#: (best held-out loss after 300 steps).
SPSA_EPS = 1e-3
SPSA_LR = 1e-2
# Values SPSA puts on the vote per step: its code and its id in two halves.
_SPSA_VALUES = 3


def describe(method: str, *, sync_every: int, outer_lr: float = OUTER_LR) -> str:
    """A human name for ``method`` with its settings (the outer lr only where it is not
    :data:`OUTER_LR`).

    Examples
    --------
    >>> from benches.workloads.diloco_trainers import describe
    >>> describe("diloco", sync_every=10, outer_lr=1.0)
    'DiLoCo H=10 fp32 outer lr 1'
    """
    check_methods([method])
    if method == "ddp":
        return "DDP (fp32 all-reduce every step)"
    if method == "spsa":
        return "SPSA (one byte per step)"
    lr = "" if outer_lr == OUTER_LR else f" outer lr {outer_lr:g}"
    if method == "diloco":
        return f"DiLoCo H={sync_every} fp32{lr}"
    if method.startswith("streaming"):
        precision = method.split("-")[1]
        return f"Streaming DiLoCo H={sync_every} F={FRAGMENTS} tau={OVERLAP_STEPS} {precision}{lr}"
    return f"NoLoCo H={sync_every}{lr} (gossip in pairs)"


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """``methods``, each known and once, in the order of :data:`METHODS` (DDP first)."""
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise InvalidArgumentError(
            f"methods must be a non-empty list of {METHODS}, got {methods!r}", "methods"
        )
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InvalidArgumentError(
            f"methods must be among {METHODS}, got {unknown[0]!r}", "methods"
        )
    # Run in the canonical order, DDP first, each once.
    return tuple(m for m in METHODS if m in methods)


def _flat(tensors: Sequence[Any]) -> Any:
    """A float32 NumPy copy of ``tensors`` end to end (NumPy, so the pipe does not pass
    torch's shared-memory handles, which outlive nothing once the worker moves on)."""
    with torch.no_grad():
        return torch.cat([t.detach().reshape(-1).float() for t in tensors]).numpy().copy()


class DDPTrainer:
    """All-reduce the averaged fp32 gradients every step, then the inner step."""

    def __init__(self, model: Any, optimizer: Any, comm: Any) -> None:
        self.model, self.optimizer, self.comm = model, optimizer, comm
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.flat = torch.zeros(sum(p.numel() for p in self.params))
        self.bytes_sent = 0
        self.peak = 0
        self.wait_s = 0.0
        self.steps = 0

    def step(self, batch: Any) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=False)
        loss = workload.language_model_loss(self.model, batch)
        loss.backward()  # type: ignore[no-untyped-call]
        offset = 0
        for p in self.params:
            n = p.numel()
            self.flat[offset : offset + n].copy_(p.grad.reshape(-1))
            offset += n
        started = time.perf_counter()
        self.comm.all_reduce(self.flat, op="avg")
        self.wait_s += time.perf_counter() - started
        sent = int(self.comm.last_stats.bytes_sent)
        self.bytes_sent += sent
        self.peak = max(self.peak, sent)
        self.steps += 1
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad.copy_(self.flat[offset : offset + n].view_as(p))
            offset += n
        self.optimizer.step()
        return float(loss.detach())

    def snapshot(self) -> Any:
        return _flat(list(self.model.parameters()))

    def finish(self) -> dict[str, Any]:
        return {
            "bytes_sent": self.bytes_sent,
            "peak_bytes_per_sync": self.peak,
            "syncs": self.steps,
            "comm_wait_s": self.wait_s,
            "retries": 0,
            "world_sizes": [],
        }


class OuterTrainer:
    """DiLoCo, Streaming DiLoCo or NoLoCo around the inner AdamW."""

    def __init__(
        self,
        method: str,
        sync_every: int,
        model: Any,
        optimizer: Any,
        comm: Any,
        *,
        outer_lr: float = OUTER_LR,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.names = [name for name, _ in model.named_parameters()]
        self.outer: Any
        if method == "noloco":
            self.outer = diloco.NoLoCo(
                model,
                optimizer,
                transport=comm,
                sync_every=sync_every,
                outer_lr=outer_lr,
                beta=NOLOCO_BETA,
            )
        else:
            streaming = method.startswith("streaming")
            self.outer = diloco.DiLoCo(
                model,
                optimizer,
                transport=comm,
                sync_every=sync_every,
                outer_lr=outer_lr,
                outer_momentum=OUTER_MOMENTUM,
                nesterov=True,
                fragments=FRAGMENTS if streaming else 1,
                overlap_steps=OVERLAP_STEPS if streaming else 0,
                quantize="fp4" if method == "streaming-fp4" else None,
            )

    def step(self, batch: Any) -> float:
        loss = workload.train_step(self.model, self.optimizer, batch)
        self.outer.step()
        return loss

    def snapshot(self) -> Any:
        if hasattr(self.outer, "global_parameters"):
            # DiLoCo's product is the global model, not any worker's local one.
            named = self.outer.global_parameters()
            return _flat([named[name] for name in self.names])
        return _flat(list(self.model.parameters()))

    def finish(self) -> dict[str, Any]:
        if hasattr(self.outer, "close"):
            self.outer.close()
        stats = self.outer.stats
        return {
            "bytes_sent": int(stats.bytes_sent),
            "peak_bytes_per_sync": int(stats.peak_bytes_per_sync),
            "syncs": int(stats.syncs),
            "comm_wait_s": float(stats.comm_wait_s),
            "retries": sum(int(r.retries) for r in stats.history),
            "world_sizes": [(int(r.step), int(r.world_size)) for r in stats.history],
        }


class SPSATrainer:
    """Shared-seed SPSA from the same initial weights, in eval mode as MeZO runs."""

    def __init__(self, model: Any, comm: Any, rank: int) -> None:
        self.model = model
        model.eval()
        # worker_id=rank: the directions, hence the run, repeat from launch to launch.
        self.spsa = diloco.SharedSeedSPSA(
            model,
            workload.language_model_loss,
            transport=comm,
            eps=SPSA_EPS,
            lr=SPSA_LR,
            seed=0,
            worker_id=rank,
        )
        self.steps = 0
        self.payload = 0

    def step(self, batch: Any) -> float:
        report = self.spsa.step(batch)
        self.steps += 1
        self.payload += int(report.bytes_exchanged)
        return float(report.loss)

    def snapshot(self) -> Any:
        return _flat(list(self.model.parameters()))

    def finish(self) -> dict[str, Any]:
        per_step = 8 * _SPSA_VALUES
        return {
            "bytes_sent": per_step * self.steps,
            "peak_bytes_per_sync": per_step,
            "syncs": self.steps,
            "comm_wait_s": None,  # inside SPSA's step, not separable from the evaluations
            "retries": 0,
            "world_sizes": [],
            "payload_bytes": self.payload,
        }


def make_trainer(
    method: str,
    *,
    sync_every: int,
    model: Any,
    optimizer: Any,
    comm: Any,
    rank: int,
    outer_lr: float = OUTER_LR,
) -> DDPTrainer | OuterTrainer | SPSATrainer:
    """The trainer of ``method`` (one of :data:`METHODS`) for one worker; ``outer_lr`` is
    that of DiLoCo, Streaming DiLoCo and NoLoCo."""
    check_methods([method])
    if method == "ddp":
        return DDPTrainer(model, optimizer, comm)
    if method == "spsa":
        return SPSATrainer(model, comm, rank)
    return OuterTrainer(method, sync_every, model, optimizer, comm, outer_lr=outer_lr)
