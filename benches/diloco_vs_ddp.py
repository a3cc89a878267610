"""DDP beside DiLoCo, Streaming DiLoCo, NoLoCo and shared-seed SPSA, on real local workers.

What ``thrifty bench diloco`` runs. Every method (see
:mod:`benches.workloads.diloco_trainers`) trains the same
:class:`~benches.workloads.diloco_language_model.TinyLM` from the same initial weights for
the same number of inner steps (unless ``max_steps``) on the same tokens: ``world``
spawned processes on 127.0.0.1 (:class:`~benches.workloads.diloco_workers.WorkerPool`),
each holding one :class:`thrifty.collective.Communicator` (a fresh coordinator per
method), worker ``r`` reading shard ``r`` of the corpus: by default the English text of
the Python documentation as bytes (``corpus="pydoc"``, a TinyLM of 1.1M weights), or the
generated Markov language (``corpus="markov"``, whose entropy floor is known).

Reported per method: bytes each worker sent (mean over workers; measured by thrifty's
transport, except SPSA, whose three float64 values per step ride on the coordinator's
commit vote and are counted as 24 bytes), the largest single sync, the ratio of bytes to
DDP's, wall time (slowest worker, from a barrier after connecting to the end of training;
evaluation is outside it), the time spent blocked on communication, and the held-out loss
(nats per token, and bits per byte on the text) of the model the method produces: DDP's
and SPSA's (equal on every worker), DiLoCo's global parameters, and for NoLoCo the mean of
every worker's held-out loss.

Wall-clock to a target loss: every worker stamps each inner step with the seconds since
that barrier, and a held-out point of step ``s`` is placed at the slowest worker's stamp of
step ``s`` (snapshots are taken every H steps, the parent evaluates them afterwards, off
the clock). The seconds to a target are those of the first point at or below it, without
interpolation between points (:func:`time_to_target`); the target is DDP's final held-out
loss of the same run unless given (:func:`apply_target`), and the speed-up is DDP's seconds
to the target over the method's. A method that needs more inner steps than DDP to reach
DDP's final loss would report "not reached" with the same budget: ``max_steps`` lets every
method but DDP run longer (DDP still runs ``steps``), so that its seconds are measured.

With ``link_rate`` the whole benchmark (this driver and its workers) runs again inside a
:class:`~benches.workloads.shaped_link.ShapedLink` of that rate: a network namespace whose
loopback goes through a tbf, so all workers share one link of the rate (root and ``tc``
needed; :class:`ShapedLinkUnavailableError` says why not).

Examples
--------
>>> from benches import diloco_vs_ddp
>>> diloco_vs_ddp.METHODS
('ddp', 'diloco', 'streaming-fp32', 'streaming-fp4', 'noloco', 'spsa')
>>> diloco_vs_ddp.describe("streaming-fp4", sync_every=25)
'Streaming DiLoCo H=25 F=4 tau=5 fp4'
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from benches.workloads import diloco_language_model as workload
from benches.workloads import shaped_link
from benches.workloads.diloco_trainers import (
    METHODS,
    OUTER_LR,
    OVERLAP_STEPS,
    check_methods,
    describe,
)
from benches.workloads.diloco_workers import RunSpec, WorkerOutput, WorkerPool
from benches.workloads.machine import cpu_name
from thrifty._checks import check_int, check_positive
from thrifty._plot import figure
from thrifty.errors import InternalError, InvalidArgumentError, ThriftyError

__all__ = [
    "CORPORA",
    "METHODS",
    "QUICK_STEPS",
    "QUICK_SYNC_EVERY",
    "SYNC_EVERY",
    "Evaluator",
    "MethodResult",
    "ShapedLinkUnavailableError",
    "apply_target",
    "budget",
    "describe",
    "format_table",
    "run",
    "save_plot",
    "settings",
    "summarize",
    "time_to_target",
]

#: H for the full run: inside the 20-50 range where DiLoCo matched DDP on the Markov
#: workload (see ``WorkloadConfig``), and a divisor of its 300 steps.
SYNC_EVERY = 25
#: Quick runs: fewer steps, and H short enough for three syncs of every fragment.
QUICK_STEPS = 60
QUICK_SYNC_EVERY = 20
#: The corpora a run can train on; the first is the default.
CORPORA = ("pydoc", "markov")
#: Quick runs on the text train a smaller TinyLM on shorter windows, at the Markov
#: workload's higher learning rate: a smoke test of every path, not a measurement.
_QUICK_TEXT = {
    "d_model": 64,
    "n_layers": 2,
    "seq_len": 64,
    "batch_size": 8,
    "eval_sequences": 64,
    "lr": 3e-3,
}

#: Longest one method's run may take (a hang guard), or the second per inner step where
#: that is longer: a budget beyond the default 300 steps (``max_steps``) is not a hang. A
#: shaped run's limit is this per method.
RUN_TIMEOUT_S = 900.0
RUN_TIMEOUT_PER_STEP_S = 3.0


def _run_timeout(max_steps: int) -> float:
    return max(RUN_TIMEOUT_S, RUN_TIMEOUT_PER_STEP_S * max_steps)


class ShapedLinkUnavailableError(ThriftyError, RuntimeError):
    """``link_rate`` was given but this machine cannot create a shaped network namespace."""


@dataclass
class MethodResult:
    """One method's row: traffic per worker, time, and the held-out loss of its model."""

    method: str
    label: str
    world: int
    steps: int
    sync_every: int | None
    syncs: int
    bytes_sent: int
    peak_bytes_per_sync: int
    bytes_vs_ddp: float | None
    wall_s: float
    comm_wait_s: float | None
    eval_loss: float
    eval_curve: list[tuple[int, float]]
    train_loss: list[float]
    workers_finished: int
    retries: int
    #: Seconds since the barrier of each point of ``eval_curve`` (0 for the initial model).
    eval_seconds: list[float]
    #: DiLoCo's, Streaming DiLoCo's and NoLoCo's outer lr; None for the others.
    outer_lr: float | None = None
    #: Filled in by :func:`apply_target`.
    seconds_to_target: float | None = None
    step_at_target: int | None = None
    speedup_vs_ddp: float | None = None
    #: True when DDP never reached the target: the speed-up is then DDP's whole run over
    #: this method's seconds, a lower bound.
    speedup_is_lower_bound: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator:
    """Held-out loss of flat parameter vectors, on one model kept for the purpose."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.model = workload.make_model(config)
        self.data = workload.evaluation_set(config)
        self.initial = workload.evaluate(self.model, data=self.data)
        self.n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def __call__(self, flat: Any) -> float:
        torch.nn.utils.vector_to_parameters(torch.from_numpy(flat), self.model.parameters())
        return workload.evaluate(self.model, data=self.data)


def summarize(
    spec: RunSpec, outputs: list[WorkerOutput], evaluator: Evaluator, *, ddp_bytes: float | None
) -> MethodResult:
    """The table row of one run: means over the workers that finished, losses evaluated."""
    finished = [o for o in outputs if o.finished]
    if not finished:
        raise InternalError(f"no worker finished the {spec.method} run")
    curves: dict[int, list[float]] = {}
    for output in finished:
        for step, flat in output.snapshots:
            curves.setdefault(step, []).append(evaluator(flat))
    eval_curve = [(0, evaluator.initial)] + [
        (step, float(np.mean(losses))) for step, losses in sorted(curves.items())
    ]
    # The model of step s exists once the slowest worker has finished step s.
    eval_seconds = [0.0] + [
        max(float(o.step_seconds[step - 1]) for o in finished) for step, _ in eval_curve[1:]
    ]
    longest = max(len(o.train_losses) for o in outputs)
    train_loss = [
        float(np.mean([o.train_losses[t] for o in outputs if len(o.train_losses) > t]))
        for t in range(longest)
    ]
    bytes_sent = round(float(np.mean([o.stats["bytes_sent"] for o in finished])))
    waits = [o.stats["comm_wait_s"] for o in finished]
    outer = spec.method not in ("ddp", "spsa")
    return MethodResult(
        method=spec.method,
        label=describe(spec.method, sync_every=spec.sync_every, outer_lr=spec.outer_lr),
        world=spec.world,
        steps=spec.steps,
        sync_every=spec.sync_every if outer else None,
        syncs=max(int(o.stats["syncs"]) for o in finished),
        bytes_sent=bytes_sent,
        peak_bytes_per_sync=max(int(o.stats["peak_bytes_per_sync"]) for o in finished),
        bytes_vs_ddp=bytes_sent / ddp_bytes if ddp_bytes else None,
        wall_s=max(float(o.stats["wall_s"]) for o in finished),
        comm_wait_s=None if None in waits else float(max(waits)),
        eval_loss=eval_curve[-1][1],
        eval_curve=eval_curve,
        train_loss=train_loss,
        workers_finished=len(finished),
        retries=max(int(o.stats["retries"]) for o in finished),
        eval_seconds=eval_seconds,
        outer_lr=spec.outer_lr if outer else None,
    )


def workload_config(corpus: str = "pydoc", *, quick: bool = False) -> Any:
    """The :class:`WorkloadConfig` of a run on ``corpus`` (one of :data:`CORPORA`).

    Examples
    --------
    >>> from benches import diloco_vs_ddp
    >>> diloco_vs_ddp.workload_config().d_model, diloco_vs_ddp.workload_config("markov").vocab
    (144, 32)
    """
    if corpus not in CORPORA:
        raise InvalidArgumentError(f"corpus must be one of {CORPORA}, got {corpus!r}", "corpus")
    if corpus == "markov":
        return workload.WorkloadConfig()
    return workload.pydoc_config(**(_QUICK_TEXT if quick else {}))


def time_to_target(
    seconds: Sequence[float], losses: Sequence[float], target: float
) -> tuple[float, int] | None:
    """``(seconds, index)`` of the first point whose loss is at or below ``target``, or None
    when no point reaches it.

    No interpolation: a curve that crosses the target between two points is credited with
    the later one, so the answer never claims a loss before a model with it was measured.

    Examples
    --------
    >>> from benches.diloco_vs_ddp import time_to_target
    >>> time_to_target([0.0, 1.5, 3.0, 4.5], [3.4, 1.2, 0.7, 0.6], 0.7)
    (3.0, 2)
    >>> time_to_target([0.0, 1.5], [3.4, 1.2], 0.7) is None
    True
    """
    if len(seconds) != len(losses):
        raise InvalidArgumentError(
            f"seconds and losses must be as long, got {len(seconds)} and {len(losses)}",
            "seconds",
        )
    for index, (when, loss) in enumerate(zip(seconds, losses, strict=True)):
        if loss <= target:
            return float(when), index
    return None


def apply_target(result: dict[str, Any], target_loss: float | None = None) -> dict[str, Any]:
    """Fill in every method's seconds to ``target_loss`` and its speed-up over DDP.

    The target is ``target_loss``, or without it DDP's final held-out loss (no target
    without a DDP run). Sets ``result["target_loss"]``, ``result["target_source"]``
    (``"given"``, ``"DDP's final held-out loss"`` or None) and in each method's row
    ``seconds_to_target``, ``step_at_target`` (None when not reached), ``speedup_vs_ddp``
    (DDP's seconds to the target over the method's) and ``speedup_is_lower_bound`` (DDP
    never reached it: its last point's seconds stand in). Returns ``result``.
    """
    rows = result["methods"]
    ddp = rows.get("ddp")
    source: str | None = "given"
    if target_loss is None:
        target_loss = None if ddp is None else float(ddp["eval_loss"])
        source = None if ddp is None else "DDP's final held-out loss"
    result["target_loss"], result["target_source"] = target_loss, source
    reached: dict[str, tuple[float, int] | None] = {}
    for name, row in rows.items():
        steps, losses = zip(*row["eval_curve"], strict=True)
        hit = (
            None
            if target_loss is None
            else time_to_target(row["eval_seconds"], losses, target_loss)
        )
        reached[name] = hit
        row["seconds_to_target"] = None if hit is None else hit[0]
        row["step_at_target"] = None if hit is None else int(steps[hit[1]])
    ddp_hit = reached.get("ddp")
    for name, row in rows.items():
        hit = reached[name]
        row["speedup_vs_ddp"], row["speedup_is_lower_bound"] = None, False
        if hit is None or ddp is None or hit[0] <= 0:
            continue
        if ddp_hit is not None:
            row["speedup_vs_ddp"] = ddp_hit[0] / hit[0]
        else:
            row["speedup_vs_ddp"] = ddp["eval_seconds"][-1] / hit[0]
            row["speedup_is_lower_bound"] = True
    return result


def settings(
    *, steps: int | None, sync_every: int | None, quick: bool, corpus: str = "pydoc"
) -> tuple[Any, int, int, int]:
    """``(config, steps, sync_every, eval_every)`` for a run on ``corpus``, checked."""
    config = workload_config(corpus, quick=quick)
    steps = (QUICK_STEPS if quick else config.steps) if steps is None else steps
    steps = check_int(steps, "steps", minimum=1)
    sync_every = (QUICK_SYNC_EVERY if quick else SYNC_EVERY) if sync_every is None else sync_every
    sync_every = check_int(sync_every, "sync_every", minimum=OVERLAP_STEPS + 1)
    if sync_every > steps:
        raise InvalidArgumentError(
            f"steps must be at least sync_every ({sync_every}) so that every method syncs, "
            f"got {steps}",
            "steps",
        )
    # A held-out point at every sync: the seconds to a target loss are only as fine as the
    # points (between syncs DiLoCo's global model does not change).
    eval_every = sync_every
    return config, steps, sync_every, eval_every


def budget(
    max_steps: int | None, *, steps: int, outer_lr: float | None = None
) -> tuple[int, float]:
    """``(max_steps, outer_lr)`` checked: the inner steps of every method but DDP (``steps``
    by default, never fewer: a shorter budget would only hide how long a method needs) and
    the outer lr (:data:`OUTER_LR` by default).

    Examples
    --------
    >>> from benches import diloco_vs_ddp
    >>> diloco_vs_ddp.budget(None, steps=300)
    (300, 0.7)
    >>> diloco_vs_ddp.budget(450, steps=300, outer_lr=1)
    (450, 1.0)
    >>> diloco_vs_ddp.budget(200, steps=300)
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: max_steps must be at least steps (300), got 200
    """
    max_steps = steps if max_steps is None else check_int(max_steps, "max_steps", minimum=1)
    if max_steps < steps:
        raise InvalidArgumentError(
            f"max_steps must be at least steps ({steps}), got {max_steps}", "max_steps"
        )
    outer_lr = OUTER_LR if outer_lr is None else check_positive(outer_lr, "outer_lr")
    return max_steps, outer_lr


def run(
    methods: Sequence[str] = METHODS,
    *,
    world: int = 4,
    steps: int | None = None,
    sync_every: int | None = None,
    quick: bool = False,
    progress: bool = True,
    plot: str | None = None,
    corpus: str = "pydoc",
    link_rate: str | int | None = None,
    target_loss: float | None = None,
    max_steps: int | None = None,
    outer_lr: float | None = None,
) -> dict[str, Any]:
    """Train the workload with each method on ``world`` local workers and compare.

    Parameters
    ----------
    methods
        Any of :data:`METHODS`; they run in that order, DDP first.
    world
        Worker processes (at least 2).
    steps
        Inner steps of DDP, and of every other method without ``max_steps``; the
        workload's 300 by default, 60 when ``quick``.
    sync_every
        H of DiLoCo, Streaming DiLoCo and NoLoCo: 25 by default, 20 when ``quick``.
    quick
        Smaller settings, for smoke tests.
    progress
        Show a progress bar per method.
    plot
        Save the held-out loss curves (against inner step and against wall-clock seconds)
        and the bytes per method to this file.
    corpus
        ``"pydoc"`` (English text as bytes) or ``"markov"`` (the generated language).
    link_rate
        Run everything inside a :class:`~benches.workloads.shaped_link.ShapedLink` of this
        rate (``"100mbit"``, ``"1gbit"``); :class:`ShapedLinkUnavailableError` where it
        cannot be made.
    target_loss
        The held-out loss whose wall-clock seconds are reported; DDP's final one by default.
    max_steps
        Inner steps of every method but DDP (at least ``steps``, which it defaults to): a
        budget to reach DDP's final loss in.
    outer_lr
        Outer lr of DiLoCo, Streaming DiLoCo and NoLoCo (:data:`OUTER_LR` by default).

    Returns
    -------
    dict
        ``world``, ``steps`` (DDP's), ``max_steps`` (the others'), ``sync_every``,
        ``outer_lr``, ``corpus``, ``n_params``, ``entropy_floor``
        (None on the text), ``references`` (:func:`reference_losses`, nats per token),
        ``ddp_reference`` (``"measured"``, or ``"ring estimate"`` without ``ddp``),
        ``methods`` (one :meth:`MethodResult.to_dict` per method, with the fields of
        :func:`apply_target`), ``target_loss``, ``target_source``, ``link`` (None, or the
        rate and what crossed its filter), ``cpu``, ``load_avg`` (1-minute load before and
        after) and ``plot``.
    """
    methods = check_methods(methods)
    world = check_int(world, "world", minimum=2)
    _, steps, sync_every, _ = settings(
        steps=steps, sync_every=sync_every, quick=quick, corpus=corpus
    )
    max_steps, outer_lr = budget(max_steps, steps=steps, outer_lr=outer_lr)
    if target_loss is not None:
        if isinstance(target_loss, bool) or not isinstance(target_loss, (int, float)):
            raise InvalidArgumentError(
                f"target_loss must be a number, got {target_loss!r}", "target_loss"
            )
        if not np.isfinite(target_loss) or target_loss <= 0:
            raise InvalidArgumentError(
                f"target_loss must be a finite loss > 0, got {target_loss!r}", "target_loss"
            )
        target_loss = float(target_loss)
    load_before = os.getloadavg()[0]
    lengths = _Lengths(steps, max_steps, sync_every, outer_lr)
    if link_rate is not None and shaped_link.current() is None:
        result = _run_shaped(link_rate, methods, world, lengths, quick, progress, corpus)
    else:
        result = _measure(methods, world, lengths, quick, progress, corpus)
    result["load_avg"] = [load_before, os.getloadavg()[0]]
    apply_target(result, target_loss)
    if plot is not None:
        save_plot(result, plot)
        result["plot"] = plot
    return result


@dataclass(frozen=True)
class _Lengths:
    """What :func:`run` checked of a run's length and outer steps, for :func:`_measure`."""

    steps: int
    max_steps: int
    sync_every: int
    outer_lr: float


def _run_shaped(
    link_rate: str | int,
    methods: Sequence[str],
    world: int,
    lengths: _Lengths,
    quick: bool,
    progress: bool,
    corpus: str,
) -> dict[str, Any]:
    """:func:`_measure` in a spawned process inside a fresh shaped namespace."""
    rate_bps = shaped_link.parse_rate(link_rate, "link_rate")
    reason = shaped_link.available()
    if reason is not None:
        raise ShapedLinkUnavailableError(
            f"link_rate {link_rate} needs a rate-limited network namespace, which cannot be "
            f"made here: {reason}"
        )
    timeout = _run_timeout(lengths.max_steps) * len(methods) + 300
    with shaped_link.ShapedLink(rate_bps) as link:
        if progress:
            print(
                f"link {link_rate}: namespace {link.name}, burst {link.burst} B",
                file=sys.stderr,
                flush=True,
            )
        try:
            result: dict[str, Any] = link.call(
                _measure,
                methods,
                world,
                lengths,
                quick,
                progress,
                corpus,
                timeout=timeout,
            )
        except shaped_link.ShapedLinkError as error:
            raise InternalError(str(error)) from error
        stats = link.qdisc_stats()
    result["link"].update(rate=str(link_rate), filter_bytes=stats.bytes, filter_drops=stats.drops)
    return result


def _measure(
    methods: Sequence[str],
    world: int,
    lengths: _Lengths,
    quick: bool,
    progress: bool,
    corpus: str,
) -> dict[str, Any]:
    """Every method on a fresh pool of workers, here (inside the namespace, if any)."""
    config, steps, sync_every, eval_every = settings(
        steps=lengths.steps, sync_every=lengths.sync_every, quick=quick, corpus=corpus
    )
    max_steps, outer_lr = budget(lengths.max_steps, steps=steps, outer_lr=lengths.outer_lr)
    evaluator = Evaluator(config)
    # Without a DDP run, compare with what its ring all-reduce would send.
    ddp_bytes: float | None = workload.ring_all_reduce_bytes(evaluator.n_params, world) * steps
    reference = "ring estimate"
    results: list[MethodResult] = []
    with WorkerPool(world, progress=progress, timeout_s=_run_timeout(max_steps)) as pool:
        for method in methods:
            length = steps if method == "ddp" else max_steps
            spec = RunSpec(method, world, length, sync_every, eval_every, config, outer_lr=outer_lr)
            outputs = pool.run(spec, progress=progress, description=f"{method} x{world}")
            if method == "ddp":
                ddp_bytes, reference = None, "measured"
            row = summarize(spec, outputs, evaluator, ddp_bytes=ddp_bytes)
            if method == "ddp":
                ddp_bytes = float(row.bytes_sent)
                row.bytes_vs_ddp = 1.0
            results.append(row)
    references = workload.reference_losses(config)
    inside = shaped_link.current()
    return {
        "world": world,
        "steps": steps,
        "max_steps": max_steps,
        "sync_every": sync_every,
        "outer_lr": outer_lr,
        "corpus": config.corpus,
        "n_params": evaluator.n_params,
        "entropy_floor": references.get("entropy floor"),
        "references": references,
        "initial_loss": evaluator.initial,
        "ddp_reference": reference,
        "cpus": os.cpu_count(),
        "cpu": cpu_name(),
        "link": None if inside is None else {"namespace": inside[0], "rate_bps": inside[1]},
        "methods": {r.method: r.to_dict() for r in results},
        "plot": None,
    }


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _loss_note(result: dict[str, Any]) -> str:
    """What the loss column is measured in, and what to read it against."""
    if result.get("corpus") == "pydoc":
        references = result["references"]
        baselines = ", ".join(
            f"{name} {loss:.3f} = {loss / math.log(2):.2f} bits"
            for name, loss in references.items()
        )
        return f"held-out loss in nats/byte and bits/byte (baselines: {baselines})"
    return f"held-out loss in nats/token (floor {result['entropy_floor']:.3f})"


def format_table(result: dict[str, Any]) -> str:
    """One row per method: bytes per worker and their ratio to DDP, the largest sync, wall
    time, time blocked on communication, held-out loss (and in bits per byte on the text)
    and its gap to DDP's, seconds to the target loss and the speed-up over DDP's (``>`` when
    DDP never reached it).

    Examples
    --------
    >>> from benches import diloco_vs_ddp
    >>> row = {"label": "DiLoCo H=25 fp32", "bytes_sent": 510_000, "bytes_vs_ddp": 0.04,
    ...        "peak_bytes_per_sync": 42_500, "wall_s": 9.5, "comm_wait_s": 0.3,
    ...        "eval_loss": 0.61, "syncs": 12}
    >>> result = {"world": 4, "steps": 300, "entropy_floor": 0.504, "ddp_reference": "measured",
    ...           "methods": {"diloco": row}}
    >>> diloco_vs_ddp.format_table(result).splitlines()[-1].split()[3:]
    ['12', '510.00', 'kB', '0.04x', '42.50', 'kB', '9.5', '0.30', '0.610', '-', '-', '-']
    >>> text = dict(result, corpus="pydoc", references={"unigram": 3.26, "bigram": 2.49})
    >>> diloco_vs_ddp.format_table(text).splitlines()[-1].split()[-5:]
    ['0.610', '0.880', '-', '-', '-']
    """
    rows = result["methods"]
    ddp = rows.get("ddp")
    bits = result.get("corpus") == "pydoc"
    header = (
        f"{'method':<42} {'syncs':>7} {'bytes/worker':>12} {'vs DDP':>10} {'peak/sync':>12} "
        f"{'wall s':>8} {'wait s':>8} {'loss':>7}"
        + (f" {'bits/B':>7}" if bits else "")
        + f" {'vs DDP':>9} {'to target s':>12} {'speed-up':>9}"
    )
    link = result.get("link")
    target = result.get("target_loss")
    steps, longest = result["steps"], result.get("max_steps", result["steps"])
    length = (
        f"{steps} inner steps each, the same tokens"
        if longest == steps
        else f"DDP {steps} inner steps, the others {longest} (the same token stream, longer; "
        "their bytes are those of the whole run)"
    )
    lines = [
        f"{result['world']} workers, {length}; "
        f"{_loss_note(result)}; bytes vs DDP {result['ddp_reference']}",
        ("no shaped link" if not link else f"shaped link: {link.get('rate', link['rate_bps'])}")
        + (
            "; no target loss"
            if target is None
            else f"; target loss {target:.4f} ({result['target_source']}), seconds from the "
            "barrier to the first held-out point at or below it"
        ),
        header,
    ]
    for row in rows.values():
        ratio = "-" if row["bytes_vs_ddp"] is None else f"{row['bytes_vs_ddp']:.3g}x"
        wait = "-" if row["comm_wait_s"] is None else f"{row['comm_wait_s']:.2f}"
        gap = "-"
        if ddp is not None and row is not ddp:
            gap = f"{100 * (row['eval_loss'] / ddp['eval_loss'] - 1):+.1f}%"
        per_byte = f" {row['eval_loss'] / math.log(2):>7.3f}" if bits else ""
        reached = row.get("seconds_to_target")
        to_target = (
            "-" if target is None else "not reached" if reached is None else f"{reached:.1f}"
        )
        speedup = "-"
        if row.get("speedup_vs_ddp") is not None:
            bound = ">" if row.get("speedup_is_lower_bound") else ""
            speedup = f"{bound}{row['speedup_vs_ddp']:.2f}x"
        lines.append(
            f"{row['label']:<42} {row['syncs']:>7} {_bytes(row['bytes_sent']):>12} "
            f"{ratio:>10} {_bytes(row['peak_bytes_per_sync']):>12} {row['wall_s']:>8.1f} "
            f"{wait:>8} {row['eval_loss']:>7.3f}{per_byte} {gap:>9} {to_target:>12} {speedup:>9}"
        )
    return "\n".join(lines)


def save_plot(result: dict[str, Any], path: str) -> None:
    """Held-out loss against wall-clock seconds (with the target) and against inner step,
    and bytes per worker (log scale), per method."""
    rows = result["methods"]
    with figure(path, 1, 3, size=(17, 4.5)) as (clock, curves, traffic):
        target = result.get("target_loss")
        for row in rows.values():
            reached = row.get("seconds_to_target")
            label = row["label"] + (
                ""
                if target is None
                else " (not reached)"
                if reached is None
                else f" ({reached:.0f} s)"
            )
            clock.plot(row["eval_seconds"], [loss for _, loss in row["eval_curve"]],
                       marker="o", markersize=3, label=label)  # fmt: skip
        if target is not None:
            clock.axhline(target, color="black", linestyle="--", linewidth=1, label="target")
        clock.set_xlabel("wall-clock seconds since the workers' barrier")
        clock.set_ylabel("held-out loss (nats/token, log scale)")
        # Log scale: the race to the target happens a few percent above it, far below the
        # initial loss.
        clock.set_yscale("log")
        link = result.get("link")
        where = f"shaped link {link.get('rate', link['rate_bps'])}" if link else "unshaped loopback"
        clock.set_title(f"{result['world']} workers, {where}")
        clock.grid(True, alpha=0.3)
        clock.legend(fontsize=7)
        for row in rows.values():
            steps, losses = zip(*row["eval_curve"], strict=True)
            curves.plot(steps, losses, marker="o", markersize=3, label=row["label"])
        references = result.get("references") or {"entropy floor": result["entropy_floor"]}
        for (name, loss), style in zip(references.items(), (":", "--"), strict=False):
            curves.axhline(loss, color="gray", linestyle=style, label=name)
        curves.set_xlabel("inner step")
        unit = "nats/byte" if result.get("corpus") == "pydoc" else "nats/token"
        curves.set_ylabel(f"held-out loss ({unit})")
        longer = result.get("max_steps", result["steps"]) > result["steps"]
        stream = (
            "the same token stream, the others longer than DDP" if longer else "the same tokens"
        )
        curves.set_title(f"{result['world']} workers, {stream}")
        curves.grid(True, alpha=0.3)
        curves.legend(fontsize=7)
        names = list(rows)
        sent = [max(rows[n]["bytes_sent"], 1) for n in names]
        bars = traffic.bar(range(len(names)), sent, color="tab:blue")
        for bar, name in zip(bars, names, strict=True):
            ratio = rows[name]["bytes_vs_ddp"]
            if ratio is not None:
                traffic.annotate(
                    f"{ratio:.3g}x",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        traffic.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        traffic.set_yscale("log")
        traffic.set_ylabel("bytes sent per worker")
        traffic.set_title("traffic (ratio to DDP above each bar)")
        traffic.grid(True, axis="y", alpha=0.3)
