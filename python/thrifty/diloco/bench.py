"""DDP beside DiLoCo, Streaming DiLoCo, NoLoCo and shared-seed SPSA, on real local workers.

Every method trains the same :class:`~thrifty.diloco.workload.TinyLM` from the same
initial weights for the same number of inner steps on the same tokens: ``world`` spawned
processes on 127.0.0.1, each holding one :class:`thrifty.collective.Communicator` (a fresh
coordinator per method), worker ``r`` reading shard ``r`` of
:func:`~thrifty.diloco.workload.batches`. The methods:

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

Reported per method: bytes each worker sent (mean over workers; measured by thrifty's
transport, except SPSA, whose three float64 values per step ride on the coordinator's
commit vote and are counted as 24 bytes), the largest single sync, the ratio of bytes to
DDP's, wall time (slowest worker, from a barrier after connecting to the end of training;
evaluation is outside it), the time spent blocked on communication, and the held-out loss
of the model the method produces: DDP's and SPSA's (equal on every worker), DiLoCo's
global parameters, and for NoLoCo the mean of every worker's held-out loss.

Examples
--------
>>> from thrifty.diloco import bench
>>> bench.METHODS
('ddp', 'diloco', 'streaming-fp32', 'streaming-fp4', 'noloco', 'spsa')
>>> bench.describe("streaming-fp4", sync_every=25)
'Streaming DiLoCo H=25 F=4 tau=5 fp4'
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from thrifty._checks import check_int
from thrifty._plot import figure
from thrifty.errors import InternalError, InvalidArgumentError

METHODS = ("ddp", "diloco", "streaming-fp32", "streaming-fp4", "noloco", "spsa")

#: H for the full run: inside the 20-50 range where DiLoCo matched DDP on this workload
#: (see ``WorkloadConfig``), and a divisor of its 300 steps.
SYNC_EVERY = 25
#: Quick runs: fewer steps, and H short enough for three syncs of every fragment.
QUICK_STEPS = 60
QUICK_SYNC_EVERY = 20

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

_SECRET = "thrifty-diloco-bench"
# Values SPSA puts on the vote per step: its code and its id in two halves (see spsa.py).
_SPSA_VALUES = 3


def describe(method: str, *, sync_every: int) -> str:
    """A human name for ``method`` with its settings."""
    _check_methods([method])
    if method == "ddp":
        return "DDP (fp32 all-reduce every step)"
    if method == "diloco":
        return f"DiLoCo H={sync_every} fp32"
    if method.startswith("streaming"):
        precision = method.split("-")[1]
        return f"Streaming DiLoCo H={sync_every} F={FRAGMENTS} tau={OVERLAP_STEPS} {precision}"
    if method == "noloco":
        return f"NoLoCo H={sync_every} (gossip in pairs)"
    return "SPSA (one byte per step)"


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
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


# ---------------------------------------------------------------------------------------
# The workers


@dataclass(frozen=True)
class RunSpec:
    """One method's run, as every worker receives it.

    ``kill_rank`` / ``kill_at``: the worker of that rank SIGKILLs itself inside the first
    all-reduce it starts at or after inner step ``kill_at`` (the demo's failure).
    """

    method: str
    world: int
    steps: int
    sync_every: int
    eval_every: int
    config: Any  # a workload.WorkloadConfig
    kill_rank: int | None = None
    kill_at: int | None = None


@dataclass
class WorkerOutput:
    """What one worker reported for one run (``finished`` is False if it died)."""

    index: int
    rank: int = -1
    finished: bool = False
    train_losses: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _flat(tensors: Sequence[Any]) -> Any:
    """A float32 NumPy copy of ``tensors`` end to end (NumPy, so the pipe does not pass
    torch's shared-memory handles, which outlive nothing once the worker moves on)."""
    import torch

    with torch.no_grad():
        return torch.cat([t.detach().reshape(-1).float() for t in tensors]).numpy().copy()


class _DDP:
    """All-reduce the averaged fp32 gradients every step, then the inner step."""

    def __init__(self, model: Any, optimizer: Any, comm: Any) -> None:
        import torch

        self.model, self.optimizer, self.comm = model, optimizer, comm
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.flat = torch.zeros(sum(p.numel() for p in self.params))
        self.bytes_sent = 0
        self.peak = 0
        self.wait_s = 0.0
        self.steps = 0

    def step(self, batch: Any) -> float:
        from thrifty.diloco import workload

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


class _Outer:
    """DiLoCo, Streaming DiLoCo or NoLoCo around the inner AdamW."""

    def __init__(self, spec: RunSpec, model: Any, optimizer: Any, comm: Any) -> None:
        from thrifty import diloco

        self.model, self.optimizer = model, optimizer
        self.names = [name for name, _ in model.named_parameters()]
        self.outer: Any
        if spec.method == "noloco":
            self.outer = diloco.NoLoCo(
                model,
                optimizer,
                transport=comm,
                sync_every=spec.sync_every,
                outer_lr=OUTER_LR,
                beta=NOLOCO_BETA,
            )
        else:
            streaming = spec.method.startswith("streaming")
            self.outer = diloco.DiLoCo(
                model,
                optimizer,
                transport=comm,
                sync_every=spec.sync_every,
                outer_lr=OUTER_LR,
                outer_momentum=OUTER_MOMENTUM,
                nesterov=True,
                fragments=FRAGMENTS if streaming else 1,
                overlap_steps=OVERLAP_STEPS if streaming else 0,
                quantize="fp4" if spec.method == "streaming-fp4" else None,
            )

    def step(self, batch: Any) -> float:
        from thrifty.diloco import workload

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


class _SPSA:
    """Shared-seed SPSA from the same initial weights, in eval mode as MeZO runs."""

    def __init__(self, model: Any, comm: Any, rank: int) -> None:
        from thrifty.diloco import workload
        from thrifty.diloco._spsa import SharedSeedSPSA

        self.model = model
        model.eval()
        # worker_id=rank: the directions, hence the run, repeat from launch to launch.
        self.spsa = SharedSeedSPSA(
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


def _connect(address: str, world: int) -> Any:
    from thrifty import collective

    comm = collective.Communicator(
        address, secret=_SECRET, bind_host="127.0.0.1", timeout_s=60.0, connections=2
    )
    comm.connect()
    deadline = time.monotonic() + 120.0
    while comm.world_size < world:
        if time.monotonic() > deadline:
            comm.close()
            raise TimeoutError(f"the world never reached {world} workers")
        epoch = comm.epoch
        comm.update_topology()
        if comm.epoch == epoch:
            time.sleep(0.01)  # nobody new yet: let the other workers start
    return comm


def _train(index: int, spec: RunSpec, address: str, send: Any) -> WorkerOutput:
    from thrifty.diloco import workload

    comm = _connect(address, spec.world)
    try:
        rank = comm.rank
        output = WorkerOutput(index=index, rank=rank)
        output.stats["rank_start"] = rank
        model = workload.make_model(spec.config)
        optimizer = workload.make_inner_optimizer(
            model, lr=spec.config.lr, weight_decay=spec.config.weight_decay
        )
        stream = workload.batches(rank, spec.world, config=spec.config)
        done = [0]
        pending: list[float] = []
        if spec.kill_rank == rank and spec.kill_at is not None:
            real = comm.all_reduce
            kill_at = spec.kill_at

            def dying_all_reduce(*args: Any, **kwargs: Any) -> Any:
                if done[0] >= kill_at:
                    # What it learnt so far reaches the parent before the crash.
                    send(("progress", index, done[0] - 1, list(pending)))
                    os.kill(os.getpid(), signal.SIGKILL)  # inside the sync, as a crash would
                return real(*args, **kwargs)

            comm.all_reduce = dying_all_reduce
        comm.barrier()
        started = time.perf_counter()
        trainer: Any
        if spec.method == "ddp":
            trainer = _DDP(model, optimizer, comm)
        elif spec.method == "spsa":
            trainer = _SPSA(model, comm, rank)
        else:
            trainer = _Outer(spec, model, optimizer, comm)
        report_every = max(1, spec.steps // 50)
        for step in range(1, spec.steps + 1):
            done[0] = step  # the step in progress: its sync is where a victim dies
            loss = trainer.step(next(stream))
            pending.append(loss)
            output.train_losses.append(loss)
            if step % spec.eval_every == 0 or step == spec.steps:
                output.snapshots.append((step, trainer.snapshot()))
            if step % report_every == 0:
                send(("progress", index, step, list(pending)))
                pending.clear()
        output.stats.update(trainer.finish())
        output.stats["wall_s"] = time.perf_counter() - started
        output.stats["world_size_end"] = int(comm.world_size)
        output.rank = int(comm.rank)
        output.finished = True
        if spec.method != "noloco" and output.rank != 0:
            output.snapshots = []  # every worker holds the same model: rank 0's will do
        return output
    finally:
        comm.close()


def _worker(index: int, conn: Any) -> None:
    """Serve runs from the parent over ``conn`` until told to stop."""
    import torch

    from thrifty.diloco import workload

    # One thread per worker: the workers share the machine's cores between them.
    torch.set_num_threads(1)
    # The first model, optimizer step and corpus cost seconds (lazy imports inside torch):
    # pay them here, outside every timed run.
    model = workload.make_model()
    workload.train_step(model, workload.make_inner_optimizer(model), next(workload.batches(0, 1)))
    import thrifty.collective
    import thrifty.diloco._spsa  # noqa: F401 (imported for its cost, not its names)

    lock = threading.Lock()

    def send(message: Any) -> None:
        with lock:
            conn.send(message)

    send(("ready", index))
    while True:
        command, payload = conn.recv()
        if command == "stop":
            break
        spec, address = payload
        try:
            output = _train(index, spec, address, send)
        except BaseException:
            send(("error", index, traceback.format_exc()))
            continue
        send(("done", index, output))


class WorkerPool:
    """``world`` spawned worker processes, kept for several runs (torch imports once).

    Each :meth:`run` starts a coordinator in this process, has every live worker connect
    a fresh communicator to it, train one method and report. A worker that dies (the
    demo kills one) is dropped from the pool; the next runs use the survivors.

    Parameters
    ----------
    world
        Number of worker processes.
    timeout_s
        Longest a run may take before :class:`TimeoutError`.
    progress
        Show a progress bar while the workers start.
    """

    def __init__(self, world: int, *, timeout_s: float = 900.0, progress: bool = False) -> None:
        from thrifty._progress import progress_bar

        self.world = check_int(world, "world", minimum=2)
        self.timeout_s = timeout_s
        context = mp.get_context("spawn")
        self._conns: dict[int, Any] = {}
        self._processes: dict[int, Any] = {}
        for index in range(world):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(index, child), daemon=True)
            process.start()
            child.close()
            self._conns[index] = parent
            self._processes[index] = process
        # Starting takes seconds (torch imports, then warms up, in every worker): show it.
        bar = progress_bar(world, "starting workers", progress)
        for index, conn in self._conns.items():
            if not conn.poll(180):
                bar.close()
                self.close()
                raise TimeoutError(f"worker {index} did not start within 180 s")
            try:
                conn.recv()
            except EOFError:
                bar.close()
                self.close()
                raise InternalError(f"diloco bench worker {index} exited while starting") from None
            bar.update(1)
        bar.close()

    @property
    def alive(self) -> int:
        """Workers still in the pool."""
        return len(self._conns)

    def run(
        self,
        spec: RunSpec,
        *,
        progress: bool = True,
        description: str | None = None,
    ) -> list[WorkerOutput]:
        """Run ``spec`` on every live worker; one :class:`WorkerOutput` per worker, by index.

        ``spec.world`` must equal :attr:`alive`. A worker that dies mid-run keeps the
        losses it had reported (``finished=False``).
        """
        from thrifty import collective
        from thrifty._progress import progress_bar

        if spec.world != self.alive:
            raise InvalidArgumentError(
                f"world must be the {self.alive} live workers, got {spec.world}", "world"
            )
        outputs = {i: WorkerOutput(index=i) for i in self._conns}
        steps_done = dict.fromkeys(self._conns, 0)
        bar = progress_bar(spec.steps, description or spec.method, progress)
        shown = 0
        with collective.Coordinator("127.0.0.1:0", secret=_SECRET) as coordinator:
            for conn in self._conns.values():
                conn.send(("run", (spec, coordinator.address)))
            waiting = set(self._conns)
            deadline = time.monotonic() + self.timeout_s
            try:
                while waiting:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(
                            f"{spec.method} did not finish within {self.timeout_s:.0f} s"
                        )
                    handles = [self._conns[i] for i in waiting]
                    handles += [self._processes[i].sentinel for i in waiting]
                    for ready in multiprocessing.connection.wait(handles, timeout=left):
                        index = self._index_of(ready)
                        if index not in waiting:
                            continue
                        if not self._receive(index, outputs, steps_done):
                            waiting.discard(index)
                    live = [steps_done[i] for i in waiting] or [spec.steps]
                    if min(live) > shown:
                        bar.update(min(live) - shown)
                        shown = min(live)
            finally:
                bar.close()
        return [outputs[i] for i in sorted(outputs)]

    def _index_of(self, handle: Any) -> int:
        for index, conn in self._conns.items():
            if handle is conn or handle == self._processes[index].sentinel:
                return index
        return -1

    def _receive(
        self, index: int, outputs: dict[int, WorkerOutput], steps_done: dict[int, int]
    ) -> bool:
        """Handle what worker ``index`` sent; False once it is done (or dead)."""
        conn = self._conns[index]
        try:
            while conn.poll():
                message = conn.recv()
                kind = message[0]
                if kind == "progress":
                    outputs[index].train_losses.extend(message[3])
                    steps_done[index] = message[2]
                elif kind == "done":
                    outputs[index] = message[2]
                    steps_done[index] = len(message[2].train_losses)
                    return False
                elif kind == "error":
                    raise InternalError(f"diloco bench worker {index} failed:\n{message[2]}")
        except (EOFError, ConnectionResetError):
            pass
        if self._processes[index].is_alive():
            return True
        self._processes[index].join(timeout=5)
        del self._conns[index]
        del self._processes[index]
        return False

    def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("stop", None))
        for process in self._processes.values():
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        self._conns.clear()
        self._processes.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------
# Results


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
        from thrifty.diloco import workload

        self.config = config
        self.model = workload.make_model(config)
        self.data = workload.evaluation_set(config)
        self.initial = workload.evaluate(self.model, data=self.data)
        self.n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def __call__(self, flat: Any) -> float:
        import torch

        from thrifty.diloco import workload

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


def settings(
    *, steps: int | None, sync_every: int | None, quick: bool
) -> tuple[Any, int, int, int]:
    """``(config, steps, sync_every, eval_every)`` for a run, checked."""
    from thrifty.diloco import workload

    config = workload.WorkloadConfig()
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

    Returns
    -------
    dict
        ``world``, ``steps``, ``sync_every``, ``n_params``, ``entropy_floor``,
        ``ddp_reference`` (``"measured"``, or ``"ring estimate"`` without ``ddp``),
        ``methods`` (one :meth:`MethodResult.to_dict` per method) and ``plot``.
    """
    from thrifty.diloco import workload

    methods = _check_methods(methods)
    world = check_int(world, "world", minimum=2)
    config, steps, sync_every, eval_every = settings(
        steps=steps, sync_every=sync_every, quick=quick
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
    result: dict[str, Any] = {
        "world": world,
        "steps": steps,
        "sync_every": sync_every,
        "n_params": evaluator.n_params,
        "entropy_floor": workload.corpus(config).entropy_floor(config.seq_len),
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


def format_table(result: dict[str, Any]) -> str:
    """One row per method: bytes per worker and their ratio to DDP, the largest sync, wall
    time, time blocked on communication, held-out loss and its gap to DDP's.

    Examples
    --------
    >>> from thrifty.diloco import bench
    >>> row = {"label": "DiLoCo H=25 fp32", "bytes_sent": 510_000, "bytes_vs_ddp": 0.04,
    ...        "peak_bytes_per_sync": 42_500, "wall_s": 9.5, "comm_wait_s": 0.3,
    ...        "eval_loss": 0.61, "syncs": 12}
    >>> result = {"world": 4, "steps": 300, "entropy_floor": 0.504, "ddp_reference": "measured",
    ...           "methods": {"diloco": row}}
    >>> bench.format_table(result).splitlines()[-1].split()[3:]
    ['12', '510.00', 'kB', '0.04x', '42.50', 'kB', '9.5', '0.30', '0.610', '-']
    """
    rows = result["methods"]
    ddp = rows.get("ddp")
    header = (
        f"{'method':<42} {'syncs':>7} {'bytes/worker':>12} {'vs DDP':>10} {'peak/sync':>12} "
        f"{'wall s':>8} {'wait s':>8} {'loss':>7} {'vs DDP':>9}"
    )
    lines = [
        f"{result['world']} workers, {result['steps']} inner steps each, the same tokens; "
        f"held-out loss in nats/token (floor {result['entropy_floor']:.3f}); bytes vs DDP "
        f"{result['ddp_reference']}",
        header,
    ]
    for row in rows.values():
        ratio = "-" if row["bytes_vs_ddp"] is None else f"{row['bytes_vs_ddp']:.3g}x"
        wait = "-" if row["comm_wait_s"] is None else f"{row['comm_wait_s']:.2f}"
        gap = "-"
        if ddp is not None and row is not ddp:
            gap = f"{100 * (row['eval_loss'] / ddp['eval_loss'] - 1):+.1f}%"
        lines.append(
            f"{row['label']:<42} {row['syncs']:>7} {_bytes(row['bytes_sent']):>12} "
            f"{ratio:>10} {_bytes(row['peak_bytes_per_sync']):>12} {row['wall_s']:>8.1f} "
            f"{wait:>8} {row['eval_loss']:>7.3f} {gap:>9}"
        )
    return "\n".join(lines)


def save_plot(result: dict[str, Any], path: str) -> None:
    """Held-out loss against inner step, and bytes per worker (log scale), per method."""
    rows = result["methods"]
    with figure(path, 1, 2, size=(12, 4.5)) as (curves, traffic):
        for row in rows.values():
            steps, losses = zip(*row["eval_curve"], strict=True)
            curves.plot(steps, losses, marker="o", markersize=3, label=row["label"])
        curves.axhline(result["entropy_floor"], color="gray", linestyle=":", label="entropy floor")
        curves.set_xlabel("inner step")
        curves.set_ylabel("held-out loss (nats/token)")
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
