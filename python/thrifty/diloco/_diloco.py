"""DiLoCo and Streaming DiLoCo: rare, fragment-wise, overlapped outer steps.

DiLoCo (arXiv 2311.08105): every worker runs ``sync_every`` (H) inner steps on its own;
then the *pseudo-gradient* ``global - local`` is averaged over workers and applied to the
global parameters by an outer Nesterov SGD, and the workers restart from the result.
Streaming DiLoCo (arXiv 2501.18512) syncs ``fragments`` (F) parts of the model in turn,
fragment ``f`` at steps ``t % H == f*H//F``, launches each exchange ``overlap_steps`` (tau)
steps before it is applied so communication hides behind compute, merges with
``mix`` (the paper's alpha), and sends outer gradients in 4-bit floats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from thrifty._checks import check_choice, check_int, check_rate, check_real
from thrifty._extras import require
from thrifty.diloco._exchange import QUANTIZATIONS, Exchange, Exchanged
from thrifty.diloco._flat import flatten, write_back
from thrifty.diloco._fragments import Fragment, plan_fragments
from thrifty.diloco._stats import CommStats, SyncRecord
from thrifty.diloco._transport import (
    MAX_RETRIES,
    Transport,
    as_transport,
    epoch,
    is_elastic,
    recover,
)
from thrifty.diloco.compressors import Compressor, EControl, ErrorFeedback, Feedback
from thrifty.errors import CollectiveAborted, InvalidArgumentError, PeerLost

if TYPE_CHECKING:
    import torch.distributed

_LOST = (PeerLost, CollectiveAborted)


def check_training_loop(model: Any, inner_optimizer: Any) -> None:
    """What DiLoCo and NoLoCo wrap: a torch module and its optimizer."""
    torch = require("torch")
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError(
            f"model must be a torch.nn.Module, got {type(model).__name__}", "model"
        )
    if not isinstance(inner_optimizer, torch.optim.Optimizer):
        raise InvalidArgumentError(
            f"inner_optimizer must be a torch.optim.Optimizer, got "
            f"{type(inner_optimizer).__name__}",
            "inner_optimizer",
        )


@dataclass
class _Flight:
    """An exchange launched and not yet absorbed."""

    launched: int
    job: Callable[[], tuple[Exchanged, int, float]]
    future: Future[tuple[Exchanged, int, float]] | None
    delta: Any


class DiLoCo:
    """DiLoCo and Streaming DiLoCo around any model and inner optimizer.

    Call :meth:`step` after every inner ``optimizer.step()``; it counts inner steps and
    runs the syncs when they are due. Each worker holds the global parameters and the
    outer optimizer's state, identical on every worker, so any worker's
    :meth:`state_dict` resumes the run and a newcomer copies them from the others.

    Parameters
    ----------
    model
        The ``torch.nn.Module`` trained by every worker (the same architecture).
    inner_optimizer
        Its optimizer (AdamW in the paper); kept as it is across syncs.
    transport
        A :class:`~thrifty.diloco.Transport`: a :class:`thrifty.collective.Communicator`
        (peers may join and leave) or a :class:`thrifty.collective.TorchDistributed`, or a
        ``torch.distributed`` process group. The same code runs on all of them; in fp32
        without quantization they give bit-equal parameters at the same world size.
    sync_every
        H, inner steps between two syncs of the same fragment (OpenDiLoCo: 500).
    outer_lr, outer_momentum, nesterov
        The outer SGD (arXiv 2311.08105: 0.7, 0.9, Nesterov).
    fragments
        F, an int (the model's units dealt out by ``fragment_pattern``), or explicit lists
        of module names covering every parameter once.
    fragment_pattern
        ``"strided"`` (unit ``i`` goes to fragment ``i % F``; slightly better in
        arXiv 2501.18512) or ``"sequential"`` (contiguous, balanced by size).
    overlap_steps
        tau, inner steps between launching an exchange and applying it, ``0 <= tau < H``.
        The exchange runs on a background thread meanwhile.
    mix
        alpha, how much of its own parameters a worker keeps at a sync:
        ``local <- mix * local + (1 - mix) * (global + progress)``, where ``progress`` is
        what the worker learned during the overlap (``local - local_at_launch``). With
        ``mix=0`` a worker restarts from the new global parameters, *carrying over* the
        tau steps made while the exchange ran (they count in its next pseudo-gradient,
        so nothing is discarded); ``mix=1`` never pulls workers together.
    quantize
        ``None`` (fp32), ``"int8"``, ``"fp8"`` or ``"fp4"`` (block quantization; over
        thrifty's transport its quantized all-reduce, over torch.distributed an
        all-gather of block-quantized payloads), or any
        :class:`~thrifty.diloco.compressors.Compressor` such as ``TopK(0.01)``, or an
        :class:`~thrifty.diloco.compressors.LGreCo` choosing among several per layer
        (bound to each fragment's parameters; its levels are shared state, checkpointed
        and handed to newcomers).
    error_feedback
        :class:`~thrifty.diloco.compressors.ErrorFeedback` or
        :class:`~thrifty.diloco.compressors.EControl`, each wrapping its own compressor
        (then leave ``quantize`` unset). EControl's ``h`` is already a running estimate of
        the pseudo-gradient: pair it with ``outer_momentum=0`` (on the test workload, top-1%
        with momentum 0.9 diverged, and with plain outer SGD, lr 1, it beat top-1% alone).

    Attributes
    ----------
    stats : CommStats
        ``bytes_sent``, ``syncs``, ``peak_bytes_per_sync``, ``comm_wait_s`` and
        ``history`` (one :class:`SyncRecord` per fragment sync).
    fragments : list[Fragment]
        The fragments, in sync order.

    Examples
    --------
    >>> import torch
    >>> from thrifty import collective, diloco
    >>> model = torch.nn.Linear(4, 1)
    >>> inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    >>> with collective.Coordinator(secret="s") as coordinator:
    ...     with collective.Communicator(coordinator.address, secret="s") as comm:
    ...         comm.connect(); comm.update_topology()
    ...         outer = diloco.DiLoCo(model, inner, transport=comm, sync_every=5)
    ...         for _ in range(10):
    ...             inner.zero_grad()
    ...             model(torch.ones(2, 4)).pow(2).mean().backward()
    ...             inner.step()
    ...             outer.step()
    >>> outer.stats.syncs, outer.stats.history[-1].step
    (2, 10)
    """

    def __init__(
        self,
        model: Any,
        inner_optimizer: Any,
        *,
        transport: Transport | torch.distributed.ProcessGroup,
        sync_every: int,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        nesterov: bool = True,
        fragments: int | list[list[str]] = 1,
        fragment_pattern: str = "strided",
        overlap_steps: int = 0,
        mix: float = 0.0,
        quantize: str | Compressor | None = None,
        error_feedback: Feedback | None = None,
    ) -> None:
        torch = require("torch")
        check_training_loop(model, inner_optimizer)
        self.sync_every = check_int(sync_every, "sync_every", minimum=1)
        # The step is an alpha of float32 parameters: a larger one cannot even be applied.
        self.outer_lr = check_rate(outer_lr, "outer_lr")
        self.outer_momentum = check_real(
            outer_momentum, "outer_momentum", low=0.0, high=1.0, high_open=True
        )
        if not isinstance(nesterov, bool):
            raise InvalidArgumentError(
                f"nesterov must be a bool, got {type(nesterov).__name__}", "nesterov"
            )
        self.nesterov = nesterov
        self.overlap_steps = check_int(overlap_steps, "overlap_steps", minimum=0)
        if self.overlap_steps >= self.sync_every:
            raise InvalidArgumentError(
                f"overlap_steps must be < sync_every ({self.sync_every}), got {overlap_steps}",
                "overlap_steps",
            )
        self.mix = check_real(mix, "mix", low=0.0, high=1.0)
        self._check_compression(quantize, error_feedback)
        self.model = model
        self.inner_optimizer = inner_optimizer
        self.transport = as_transport(transport)
        self.fragments: list[Fragment] = plan_fragments(model, fragments, fragment_pattern)
        self._exchange = Exchange(
            self.transport,
            quantize,
            error_feedback,
            [[int(p.numel()) for p in fr.params] for fr in self.fragments],
        )
        self._feedback = error_feedback
        count = len(self.fragments)
        self._offsets = [(f * self.sync_every) // count for f in range(count)]
        self._global = [flatten(fr.params) for fr in self.fragments]
        self._momentum = [torch.zeros_like(g) for g in self._global]
        self._incoming = [torch.zeros_like(g) for g in self._global]
        self._ready = [False] * count
        self._snapshot: list[Any] = [None] * count
        self._feedback_state: list[dict[str, Any]] = [
            error_feedback.init_state(int(g.numel()), g.device) if error_feedback else {}
            for g in self._global
        ]
        self._step = 0
        self._flights: dict[int, _Flight] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thrifty-diloco")
        self.stats = CommStats()
        self._join()

    @staticmethod
    def _check_compression(quantize: object, feedback: object) -> None:
        if isinstance(quantize, str):
            check_choice(quantize, "quantize", QUANTIZATIONS)
        elif quantize is not None and not isinstance(quantize, Compressor):
            raise InvalidArgumentError(
                f"quantize must be None, one of {', '.join(map(repr, QUANTIZATIONS))} or a "
                f"diloco.compressors.Compressor, got {quantize!r}",
                "quantize",
            )
        if feedback is not None:
            if not isinstance(feedback, (ErrorFeedback, EControl)):
                raise InvalidArgumentError(
                    "error_feedback must be a diloco.compressors.ErrorFeedback or EControl, "
                    f"got {type(feedback).__name__}",
                    "error_feedback",
                )
            if quantize is not None:
                raise InvalidArgumentError(
                    "error_feedback carries its own compressor: leave quantize unset",
                    "error_feedback",
                )

    # --- the schedule -----------------------------------------------------------------

    def _apply_step(self, fragment: int, t: int) -> int:
        """The first step ``>= t`` at which ``fragment`` is applied."""
        h, offset = self.sync_every, self._offsets[fragment]
        s = t + (offset - t) % h
        while s - self.overlap_steps < 1:  # nothing to launch before the first step
            s += h
        return s

    def _launches_at(self, t: int) -> list[int]:
        s = t + self.overlap_steps
        return [f for f in range(len(self.fragments)) if s % self.sync_every == self._offsets[f]]

    def _applies_at(self, t: int) -> list[int]:
        return [
            f
            for f in range(len(self.fragments))
            if t % self.sync_every == self._offsets[f] and t - self.overlap_steps >= 1
        ]

    # --- the training loop's call -----------------------------------------------------

    def step(self) -> None:
        """Count one inner step; launch, wait for and apply the syncs that are due."""
        self._step += 1
        t = self._step
        launches = self._launches_at(t)
        if launches and is_elastic(self.transport):
            if self._flights and 0 in launches:
                # Overlap so long that exchanges are always in flight: settle them once per
                # round, so membership is still reviewed (their results stay staged).
                for f in self._in_launch_order():
                    self._collect(f)
            if not self._flights:
                self._refresh(launches)
        for f in launches:
            self._launch(f, contributing=True, launched=t)
        for f in self._applies_at(t):
            self._collect(f)
            self._apply(f)

    @property
    def inner_steps(self) -> int:
        """Inner steps counted so far (shared: a newcomer takes the others' count)."""
        return self._step

    def _in_launch_order(self) -> list[int]:
        return sorted(self._flights, key=lambda g: (self._flights[g].launched, g))

    def _launch(self, f: int, *, contributing: bool, launched: int) -> None:
        torch = require("torch")
        local = flatten(self.fragments[f].params)
        if self.overlap_steps > 0:
            self._snapshot[f] = local
        delta = self._global[f] - local if contributing else torch.zeros_like(local)
        seed = self._seed(f, launched)
        state = self._feedback_state[f]
        # The fragment's exchanges counted from 0, from the shared step count alone, so a
        # newcomer counts like the others (an LGreCo re-plans on some of them).
        first = self._apply_step(f, 1)
        exchange_index = (launched + self.overlap_steps - first) // self.sync_every

        def job() -> tuple[Exchanged, int, float]:
            started = time.perf_counter()
            flags = self.transport.all_gather_scalars([1.0 if contributing else 0.0])
            result = self._exchange.run(
                self.transport, delta, seed, state, part=f, exchange_index=exchange_index
            )
            return result, round(float(np.sum(flags))), time.perf_counter() - started

        self._flights[f] = _Flight(launched, job, self._executor.submit(job), delta)

    def _seed(self, f: int, launched: int) -> int:
        # Shared by every worker (random-k picks the same coordinates everywhere).
        return (launched * 1_000_003 + f) % (2**63)

    def _collect(self, f: int) -> None:
        """Wait for fragment ``f``'s exchange (redoing it, and any after it, on failure)."""
        flight = self._flights.get(f)
        if flight is None:
            return  # absorbed already (while recovering, or by a newcomer's join)
        started = time.perf_counter()
        assert flight.future is not None
        try:
            outcome = flight.future.result()
        except _LOST:
            self._recover_from(f)
            self.stats.waited(time.perf_counter() - started)
            return
        except BaseException:
            # A refused exchange (non-finite values, say) is reported once, here: the
            # flight is over, so close() neither raises it again nor waits on it.
            del self._flights[f]
            raise
        waited = time.perf_counter() - started
        self.stats.waited(waited)
        del self._flights[f]
        self._absorb(f, flight, outcome, retries=0, wait_s=waited)

    def _recover_from(self, first: int) -> None:
        """Every launched exchange from ``first`` on failed or may have: settle them all,
        agree on the new world, then redo the failed ones in launch order."""
        failed: list[int] = []
        last: Exception | None = None
        for g in self._in_launch_order():
            flight = self._flights[g]
            assert flight.future is not None
            try:
                outcome = flight.future.result()
            except _LOST as error:
                failed.append(g)
                last = error
                continue
            del self._flights[g]
            self._absorb(g, flight, outcome, retries=0)
        retries = 1
        while failed:
            if retries > MAX_RETRIES:
                # A failure that every retry meets is rarely a lost peer: say what it was.
                raise PeerLost(
                    f"gave up on fragment {failed[0]} after {MAX_RETRIES} retries; the last "
                    f"failure: {last}"
                ) from last
            before = epoch(self.transport)
            recover(self.transport)
            try:
                if epoch(self.transport) != before:
                    self._sync_state(outstanding=failed)
                while failed:
                    g = failed[0]
                    outcome = self._flights[g].job()
                    self._absorb(g, self._flights.pop(g), outcome, retries=retries)
                    failed.pop(0)
            except _LOST as error:
                retries += 1
                last = error

    def _absorb(
        self,
        f: int,
        flight: _Flight,
        outcome: tuple[Exchanged, int, float],
        *,
        retries: int,
        wait_s: float = 0.0,
    ) -> None:
        """A successful exchange: commit error feedback, stage the average to apply."""
        result, contributors, seconds = outcome
        mean = result.total / max(contributors, 1)
        if self._feedback is not None:
            estimate = self._feedback.commit(
                flight.delta, self._feedback_state[f], result.sent, mean
            )
        else:
            estimate = mean
        self._incoming[f].copy_(estimate)
        self._ready[f] = contributors > 0
        self.stats.record(
            SyncRecord(
                step=flight.launched,
                fragment=f,
                bytes_sent=result.bytes_sent,
                seconds=seconds,
                wait_s=wait_s,
                world_size=int(self.transport.world_size),
                contributors=contributors,
                retries=retries,
            )
        )

    def _apply(self, f: int) -> None:
        """The outer Nesterov step on fragment ``f``, then the merge into the model."""
        if not self._ready[f]:
            return
        torch = require("torch")
        with torch.no_grad():
            update = self._incoming[f]
            momentum = self._momentum[f]
            momentum.mul_(self.outer_momentum).add_(update)
            step = update.add(momentum, alpha=self.outer_momentum) if self.nesterov else momentum
            self._global[f].add_(step, alpha=-self.outer_lr)
            params = self.fragments[f].params
            local = flatten(params)
            merged = self._global[f].clone()
            if self.overlap_steps > 0 and self._snapshot[f] is not None:
                merged += local - self._snapshot[f]
            if self.mix > 0:
                merged = local * self.mix + merged * (1.0 - self.mix)
            write_back(params, merged)
        self._ready[f] = False
        self._snapshot[f] = None

    def global_parameters(self) -> dict[str, Any]:
        """The global (outer) parameters by name, as the model's own dtypes: the model a
        DiLoCo run produces, identical on every worker. Load them to evaluate it:
        ``model.load_state_dict(outer.global_parameters(), strict=False)``."""
        out: dict[str, Any] = {}
        for f, fragment in enumerate(self.fragments):
            offset = 0
            for name, p in zip(fragment.names, fragment.params, strict=False):
                n = int(p.numel())
                out[name] = self._global[f][offset : offset + n].view_as(p).to(p.dtype).clone()
                offset += n
        return out

    # --- membership -------------------------------------------------------------------

    def _refresh(self, launches: list[int]) -> None:
        """Admit newcomers and drop the lost before launching: a vote, then a state sync
        when the world changed (the newcomer joins the launches that follow)."""
        started = time.perf_counter()
        before = epoch(self.transport)
        recover(self.transport)
        if epoch(self.transport) != before:
            self._sync_state(outstanding=launches)
        self.stats.waited(time.perf_counter() - started)

    def _shared_arrays(self, outstanding: list[int]) -> dict[str, Any]:
        """What every worker holds identically: the state a newcomer copies."""
        torch = require("torch")
        count = len(self.fragments)
        clock = torch.zeros(1 + 2 * count, dtype=torch.int64)
        clock[0] = self._step
        for f in range(count):
            clock[1 + f] = int(self._ready[f])
            clock[1 + count + f] = int(f in outstanding)
        arrays: dict[str, Any] = {"clock": clock}
        for f in range(count):
            arrays[f"f{f}.global"] = self._global[f]
            arrays[f"f{f}.momentum"] = self._momentum[f]
            arrays[f"f{f}.incoming"] = self._incoming[f]
            if "h_mean" in self._feedback_state[f]:
                arrays[f"f{f}.h_mean"] = self._feedback_state[f]["h_mean"]
            levels = self._levels(f)
            if levels is not None:
                arrays[f"f{f}.levels"] = torch.from_numpy(levels.copy())
        return arrays

    def _levels(self, f: int) -> Any:
        """Fragment ``f``'s L-GreCo levels (shared by every worker), or ``None``."""
        compressor = self._exchange.lgreco(f)
        return None if compressor is None else compressor.levels

    def _sync_state(self, outstanding: list[int]) -> Any:
        arrays = self._shared_arrays(outstanding)
        report = self.transport.sync_state(arrays)  # at the next revision
        clock = arrays["clock"]
        count = len(self.fragments)
        for f in range(count):
            compressor = self._exchange.lgreco(f)
            if compressor is not None and f"f{f}.levels" in arrays:
                compressor.set_levels(arrays[f"f{f}.levels"].numpy())
        self._step = int(clock[0])
        self._ready = [bool(clock[1 + f]) for f in range(count)]
        return report, [f for f in range(count) if clock[1 + count + f]]

    def _join(self) -> None:
        """The first sync: every worker adopts the most common state (a newcomer, the
        running world's), restarts from its global parameters, and takes part in the
        exchanges the world is about to do, with nothing to contribute yet."""
        started = time.perf_counter()
        _, outstanding = self._sync_state(outstanding=[])
        for f, fragment in enumerate(self.fragments):
            write_back(fragment.params, self._global[f])
        if self._step > 0:
            t = self._step
            order = sorted(outstanding, key=lambda g: (self._apply_step(g, t), g))
            for f in order:
                launched = self._apply_step(f, t) - self.overlap_steps
                self._launch(f, contributing=False, launched=launched)
                self._collect(f)
            for f in self._applies_at(t):
                if self._ready[f] and f in outstanding:
                    self._apply(f)
        self.stats.waited(time.perf_counter() - started)

    # --- checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Global parameters, outer momentum, staged updates, error feedback, L-GreCo levels,
        counters.

        Exchanges still in flight are waited for first, so nothing is lost. Save the model
        and the inner optimizer beside it; all three restore the run exactly.
        """
        for f in self._in_launch_order():
            self._collect(f)
        return {
            "step": self._step,
            "global": [g.clone() for g in self._global],
            "momentum": [m.clone() for m in self._momentum],
            "incoming": [i.clone() for i in self._incoming],
            "ready": list(self._ready),
            "snapshot": [None if s is None else s.clone() for s in self._snapshot],
            "feedback": [{k: v.clone() for k, v in s.items()} for s in self._feedback_state],
            "fragments": [list(fr.names) for fr in self.fragments],
            "levels": [
                None if (levels := self._levels(f)) is None else levels.tolist()
                for f in range(len(self.fragments))
            ],
            "stats": self.stats.as_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (from any worker of the same run)."""
        names = [list(fr.names) for fr in self.fragments]
        if state.get("fragments") != names:
            raise InvalidArgumentError(
                "state was saved with different fragments or another model", "state"
            )
        for f in self._in_launch_order():
            self._collect(f)
        self._step = int(state["step"])
        for target, key in ((self._global, "global"), (self._momentum, "momentum")):
            for f, saved in enumerate(state[key]):
                target[f].copy_(saved)
        for f, saved in enumerate(state["incoming"]):
            self._incoming[f].copy_(saved)
        self._ready = [bool(r) for r in state["ready"]]
        self._snapshot = [None if s is None else s.clone() for s in state["snapshot"]]
        for f, saved in enumerate(state["feedback"]):
            for key, value in saved.items():
                self._feedback_state[f][key].copy_(value)
        for f, levels in enumerate(state.get("levels", [])):  # absent before L-GreCo
            compressor = self._exchange.lgreco(f)
            if levels is not None and compressor is not None and compressor.levels is not None:
                compressor.set_levels(levels)
        self.stats = CommStats.from_dict(state["stats"])

    def close(self) -> None:
        """Wait for exchanges in flight and stop the background thread (also when one of
        them failed, whose error is then raised)."""
        try:
            for f in self._in_launch_order():
                self._collect(f)
        finally:
            self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return (
            f"DiLoCo(sync_every={self.sync_every}, fragments={len(self.fragments)}, "
            f"overlap_steps={self.overlap_steps}, exchange={self._exchange.name!r}, "
            f"step={self._step})"
        )
