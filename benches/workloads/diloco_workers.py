"""Spawned worker processes on 127.0.0.1 that train the language-model workload.

Each worker holds one :class:`thrifty.collective.Communicator` per run (a fresh coordinator
per run, in the parent) and reads shard ``rank`` of
:func:`~benches.workloads.diloco_language_model.batches`. Every method trains the same
:class:`~benches.workloads.diloco_language_model.TinyLM` from the same initial weights for
the same inner steps on the same tokens; :class:`WorkerPool` keeps the processes for
several runs (torch imports once) and collects each worker's losses and snapshots.

``benches/diloco_vs_ddp.py`` (``thrifty bench diloco``) and ``examples/diloco_demo.py``
drive it.
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
from dataclasses import dataclass, field
from typing import Any

import torch

from benches.workloads import diloco_language_model as workload
from benches.workloads.diloco_trainers import OUTER_LR, make_trainer
from thrifty import collective
from thrifty._checks import check_int
from thrifty._progress import progress_bar
from thrifty.errors import InternalError, InvalidArgumentError

_SECRET = "thrifty-diloco-bench"


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
    config: Any  # a diloco_language_model.WorkloadConfig
    kill_rank: int | None = None
    kill_at: int | None = None
    outer_lr: float = OUTER_LR


@dataclass
class WorkerOutput:
    """What one worker reported for one run (``finished`` is False if it died).

    ``step_seconds[t]``: seconds from the barrier after connecting to the end of inner step
    ``t + 1`` (its sync included, the snapshot taken after it not), so that a snapshot of
    step ``s`` was the model at ``step_seconds[s - 1]``.
    """

    index: int
    rank: int = -1
    finished: bool = False
    train_losses: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, Any]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _connect(address: str, world: int) -> Any:
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
        trainer = make_trainer(
            spec.method,
            sync_every=spec.sync_every,
            model=model,
            optimizer=optimizer,
            comm=comm,
            rank=rank,
            outer_lr=spec.outer_lr,
        )
        report_every = max(1, spec.steps // 50)
        for step in range(1, spec.steps + 1):
            done[0] = step  # the step in progress: its sync is where a victim dies
            loss = trainer.step(next(stream))
            output.step_seconds.append(time.perf_counter() - started)
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
    # One thread per worker: the workers share the machine's cores between them.
    torch.set_num_threads(1)
    # The first model, optimizer step and corpus cost seconds (lazy imports inside torch):
    # pay them here, outside every timed run.
    model = workload.make_model()
    workload.train_step(model, workload.make_inner_optimizer(model), next(workload.batches(0, 1)))

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
                raise InternalError(f"diloco worker {index} exited while starting") from None
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
                    raise InternalError(f"diloco worker {index} failed:\n{message[2]}")
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
