"""DDP beside DiLoCo, Streaming DiLoCo, NoLoCo and shared-seed SPSA, on real local workers.

What ``thrifty bench diloco`` runs. Every method (see
:mod:`benches.workloads.diloco_trainers`) trains the same
:class:`~benches.workloads.diloco_language_model.TinyLM` from the same initial weights for
the same number of inner steps on the same tokens: ``world`` spawned processes on 127.0.0.1
(:class:`~benches.workloads.diloco_workers.WorkerPool`), each holding one
:class:`thrifty.collective.Communicator` (a fresh coordinator per method), worker ``r``
reading shard ``r`` of the corpus: by default the English text of the Python documentation
as bytes (``corpus="pydoc"``, a TinyLM of 1.1M weights), or the generated Markov language
(``corpus="markov"``, whose entropy floor is known).

Reported per method: bytes each worker sent (mean over workers; measured by thrifty's
transport, except SPSA, whose three float64 values per step ride on the coordinator's
commit vote and are counted as 24 bytes), the largest single sync, the ratio of bytes to
DDP's, wall time (slowest worker, from a barrier after connecting to the end of training;
evaluation is outside it), the time spent blocked on communication, and the held-out loss
(nats per token, and bits per byte on the text) of the model the method produces: DDP's
and SPSA's (equal on every worker), DiLoCo's global parameters, and for NoLoCo the mean of
every worker's held-out loss.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from benches.workloads import diloco_language_model as workload
from benches.workloads.diloco_trainers import METHODS, OVERLAP_STEPS, check_methods, describe
from benches.workloads.diloco_workers import RunSpec, WorkerOutput, WorkerPool
from thrifty._checks import check_int
from thrifty._plot import figure
from thrifty.errors import InternalError, InvalidArgumentError

__all__ = [
    "CORPORA",
    "METHODS",
    "QUICK_STEPS",
    "QUICK_SYNC_EVERY",
    "SYNC_EVERY",
    "Evaluator",
    "MethodResult",
    "describe",
    "format_table",
    "run",
    "save_plot",
    "settings",
    "summarize",
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
    longest = max(len(o.train_losses) for o in outputs)
    train_loss = [
        float(np.mean([o.train_losses[t] for o in outputs if len(o.train_losses) > t]))
        for t in range(longest)
    ]
    bytes_sent = round(float(np.mean([o.stats["bytes_sent"] for o in finished])))
    waits = [o.stats["comm_wait_s"] for o in finished]
    return MethodResult(
        method=spec.method,
        label=describe(spec.method, sync_every=spec.sync_every),
        world=spec.world,
        steps=spec.steps,
        sync_every=spec.sync_every if spec.method not in ("ddp", "spsa") else None,
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
    # Held-out points every other sync (every sync in quick runs): enough for a curve.
    eval_every = sync_every if quick or steps < 4 * sync_every else 2 * sync_every
    return config, steps, sync_every, eval_every


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
) -> dict[str, Any]:
    """Train the workload with each method on ``world`` local workers and compare.

    Parameters
    ----------
    methods
        Any of :data:`METHODS`; they run in that order, DDP first.
    world
        Worker processes (at least 2).
    steps
        Inner steps of every method; the workload's 300 by default, 60 when ``quick``.
    sync_every
        H of DiLoCo, Streaming DiLoCo and NoLoCo: 25 by default, 20 when ``quick``.
    quick
        Smaller settings, for smoke tests.
    progress
        Show a progress bar per method.
    plot
        Save the held-out loss curves and the bytes per method to this file.
    corpus
        ``"pydoc"`` (English text as bytes) or ``"markov"`` (the generated language).

    Returns
    -------
    dict
        ``world``, ``steps``, ``sync_every``, ``corpus``, ``n_params``, ``entropy_floor``
        (None on the text), ``references`` (:func:`reference_losses`, nats per token),
        ``ddp_reference`` (``"measured"``, or ``"ring estimate"`` without ``ddp``),
        ``methods`` (one :meth:`MethodResult.to_dict` per method) and ``plot``.
    """
    methods = check_methods(methods)
    world = check_int(world, "world", minimum=2)
    config, steps, sync_every, eval_every = settings(
        steps=steps, sync_every=sync_every, quick=quick, corpus=corpus
    )
    evaluator = Evaluator(config)
    # Without a DDP run, compare with what its ring all-reduce would send.
    ddp_bytes: float | None = workload.ring_all_reduce_bytes(evaluator.n_params, world) * steps
    reference = "ring estimate"
    results: list[MethodResult] = []
    with WorkerPool(world, progress=progress) as pool:
        for method in methods:
            spec = RunSpec(method, world, steps, sync_every, eval_every, config)
            outputs = pool.run(spec, progress=progress, description=f"{method} x{world}")
            if method == "ddp":
                ddp_bytes, reference = None, "measured"
            row = summarize(spec, outputs, evaluator, ddp_bytes=ddp_bytes)
            if method == "ddp":
                ddp_bytes = float(row.bytes_sent)
                row.bytes_vs_ddp = 1.0
            results.append(row)
    references = workload.reference_losses(config)
    result: dict[str, Any] = {
        "world": world,
        "steps": steps,
        "sync_every": sync_every,
        "corpus": config.corpus,
        "n_params": evaluator.n_params,
        "entropy_floor": references.get("entropy floor"),
        "references": references,
        "initial_loss": evaluator.initial,
        "ddp_reference": reference,
        "cpus": os.cpu_count(),
        "methods": {r.method: r.to_dict() for r in results},
        "plot": None,
    }
    if plot is not None:
        save_plot(result, plot)
        result["plot"] = plot
    return result


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
    and its gap to DDP's.

    Examples
    --------
    >>> from benches import diloco_vs_ddp
    >>> row = {"label": "DiLoCo H=25 fp32", "bytes_sent": 510_000, "bytes_vs_ddp": 0.04,
    ...        "peak_bytes_per_sync": 42_500, "wall_s": 9.5, "comm_wait_s": 0.3,
    ...        "eval_loss": 0.61, "syncs": 12}
    >>> result = {"world": 4, "steps": 300, "entropy_floor": 0.504, "ddp_reference": "measured",
    ...           "methods": {"diloco": row}}
    >>> diloco_vs_ddp.format_table(result).splitlines()[-1].split()[3:]
    ['12', '510.00', 'kB', '0.04x', '42.50', 'kB', '9.5', '0.30', '0.610', '-']
    >>> text = dict(result, corpus="pydoc", references={"unigram": 3.26, "bigram": 2.49})
    >>> diloco_vs_ddp.format_table(text).splitlines()[-1].split()[-3:]
    ['0.610', '0.880', '-']
    """
    rows = result["methods"]
    ddp = rows.get("ddp")
    bits = result.get("corpus") == "pydoc"
    header = (
        f"{'method':<42} {'syncs':>7} {'bytes/worker':>12} {'vs DDP':>10} {'peak/sync':>12} "
        f"{'wall s':>8} {'wait s':>8} {'loss':>7}"
        + (f" {'bits/B':>7}" if bits else "")
        + f" {'vs DDP':>9}"
    )
    lines = [
        f"{result['world']} workers, {result['steps']} inner steps each, the same tokens; "
        f"{_loss_note(result)}; bytes vs DDP {result['ddp_reference']}",
        header,
    ]
    for row in rows.values():
        ratio = "-" if row["bytes_vs_ddp"] is None else f"{row['bytes_vs_ddp']:.3g}x"
        wait = "-" if row["comm_wait_s"] is None else f"{row['comm_wait_s']:.2f}"
        gap = "-"
        if ddp is not None and row is not ddp:
            gap = f"{100 * (row['eval_loss'] / ddp['eval_loss'] - 1):+.1f}%"
        per_byte = f" {row['eval_loss'] / math.log(2):>7.3f}" if bits else ""
        lines.append(
            f"{row['label']:<42} {row['syncs']:>7} {_bytes(row['bytes_sent']):>12} "
            f"{ratio:>10} {_bytes(row['peak_bytes_per_sync']):>12} {row['wall_s']:>8.1f} "
            f"{wait:>8} {row['eval_loss']:>7.3f}{per_byte} {gap:>9}"
        )
    return "\n".join(lines)


def save_plot(result: dict[str, Any], path: str) -> None:
    """Held-out loss against inner step, and bytes per worker (log scale), per method."""
    rows = result["methods"]
    with figure(path, 1, 2, size=(12, 4.5)) as (curves, traffic):
        for row in rows.values():
            steps, losses = zip(*row["eval_curve"], strict=True)
            curves.plot(steps, losses, marker="o", markersize=3, label=row["label"])
        references = result.get("references") or {"entropy floor": result["entropy_floor"]}
        for (name, loss), style in zip(references.items(), (":", "--"), strict=False):
            curves.axhline(loss, color="gray", linestyle=style, label=name)
        curves.set_xlabel("inner step")
        unit = "nats/byte" if result.get("corpus") == "pydoc" else "nats/token"
        curves.set_ylabel(f"held-out loss ({unit})")
        curves.set_title(f"{result['world']} workers, the same tokens")
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
