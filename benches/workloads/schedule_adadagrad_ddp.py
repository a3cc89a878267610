"""AdAdaGrad under data parallelism: ``WORLD`` worker processes, one gradient all-reduce a step.

The point of a growing batch is fewer optimizer steps, and so fewer all-reduces: on a slow
link a step costs its all-reduce, whatever its batch. Every solver trains the same CNN
(:func:`network`, 283,786 weights: one all-reduce moves 1.14 MB) on scikit-learn's digits
upsampled to 16 x 16 (the split of :func:`benches.workloads.optim_drop_muon.digits`: 1,347
training and 450 held-out images) with ``torch.optim.Adagrad``, until the held-out loss
falls to ``TARGET`` (the mean of the last ``WINDOW`` evaluations, :func:`smoothed`):

* ``"fixed batch 16"`` and ``"fixed batch 256"``: PyTorch's DDP
  (:class:`~torch.nn.parallel.DistributedDataParallel`) over Gloo, each rank a quarter of
  the batch;
* ``"AdAdaGrad norm"`` and ``"AdAdaGrad augmented"``: each rank cuts its quarter into
  ``MICRO_PER_RANK`` micro-batches, whose gradients come from one vectorised pass and go to
  :meth:`~thrifty.schedule.AdaptiveBatchSize.update`; its all-reduce of their sums (Gloo
  too) is the step's only gradient-sized one, and every rank steps on the mean it yields
  (:meth:`~thrifty.schedule.AdaptiveBatchSize.write_gradient`). The batch grows from
  ``MIN_BATCH`` to at most ``MAX_BATCH``.

Each rank draws from a ``DistributedSampler`` shard (``drop_last``, so shards are disjoint)
through an :class:`~thrifty.schedule.AdaptiveBatchSampler` with ``num_replicas=WORLD``, so
all ranks cut batches of one size at every step, from disjoint indices, whatever the size.

The learning rate follows one per-sample scaling rule for all solvers, the square-root rule
for adaptive optimizers: ``BASE_LR * sqrt(batch / BASE_BATCH)`` (:func:`learning_rate`),
taken at each step's batch size. After every step the clock stops, rank 0 evaluates the
held-out loss, and a broadcast of its verdict (which doubles as a barrier) ends the run for
all ranks at the same step; a step's seconds are the slowest rank's.

:func:`train_ranks` runs one solver in this process's network (inside a shaped link if
this process is in one: ``benches/adadagrad_ddp.py`` arranges that), and :func:`assemble`
makes its :class:`Trajectory`.

Examples
--------
>>> from benches.workloads.schedule_adadagrad_ddp import learning_rate, network
>>> round(learning_rate(256) / learning_rate(16), 6)  # the square-root rule
4.0
>>> sum(p.numel() for p in network(0).parameters())
283786
"""

from __future__ import annotations

import datetime
import math
import multiprocessing as mp
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from benches.workloads import optim_drop_muon
from benches.workloads.schedule_adadagrad import Fixed, RoundedUp, adaptive_step
from thrifty._checks import check_choice, check_int, check_positive
from thrifty.schedule import AdaptiveBatchSampler, AdaptiveBatchSize

WORLD = 4
RESOLUTION = 16
MICRO_PER_RANK = 2  # micro-batches each rank contributes to the test: 8 in all
MIN_BATCH, MAX_BATCH = 16, 1024
BASE_BATCH = 16
BASE_LR = 0.005  # the best of 0.005, 0.01 and 0.02 for fixed batch 256 (unshaped)
TARGET = 0.15  # held-out cross-entropy, nats
WINDOW = 3  # a run reaches the target when the mean of this many evaluations does
HIDDEN = 256
MAX_STEPS = 3000
SOLVERS = ("AdAdaGrad norm", "AdAdaGrad augmented", "fixed batch 16", "fixed batch 256")
_TIMEOUT = datetime.timedelta(seconds=300)  # every Gloo call's deadline


def learning_rate(batch: int, base_lr: float = BASE_LR) -> float:
    """The square-root scaling rule: ``base_lr`` at ``BASE_BATCH`` samples."""
    return base_lr * math.sqrt(batch / BASE_BATCH)


def network(seed: int) -> torch.nn.Module:
    """Two 3x3 convs (32 and 64 channels, each followed by a 2x2 max-pool) and two linear
    layers (``HIDDEN`` units) for 16 x 16 digits.

    The hidden layer holds most of the weights and little of the work: a model whose
    all-reduce is large beside its step's compute, the regime of a slow link.
    """
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 4 * 4, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, 10),
    )


def smoothed(losses: list[float]) -> float:
    """The mean of the last ``WINDOW`` held-out losses (infinite before there are that many):
    single evaluations of 450 images jump by more than the last steps to a target gain."""
    if len(losses) < WINDOW:
        return math.inf
    return sum(losses[-WINDOW:]) / WINDOW


@dataclass
class Trajectory:
    """One solver's run, step by step, as the driver assembles it from the ranks.

    ``seconds[t]``: the clock after step ``t + 1`` (the slowest rank's time per step, summed;
    evaluation off the clock). ``comm_seconds``: rank 0's seconds inside the gradient
    all-reduce of the adaptive solvers (for DDP it overlaps the backward pass and is not
    separable; ``None``). ``allreduce_bytes``: payload bytes each rank put into gradient
    all-reduces (a ring sends ``2 (n - 1) / n`` of it per rank).
    """

    solver: str
    seed: int
    base_lr: float
    target: float
    batch_sizes: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    comm_seconds: float | None = None
    allreduce_bytes: int = 0
    final_batch: int = 0
    wire_bytes: int | None = None  # what crossed the shaped link's filter, when there is one

    @property
    def reached_at(self) -> int | None:
        """The index of the first step where the mean of the last ``WINDOW`` held-out losses
        is at or below the target."""
        for index in range(len(self.losses)):
            if smoothed(self.losses[: index + 1]) <= self.target:
                return index
        return None

    def summary(self) -> dict[str, Any]:
        """Steps, samples and seconds to the target (``None`` if missed), and the final state."""
        at = self.reached_at
        return {
            "solver": self.solver,
            "seed": self.seed,
            "reached": at is not None,
            "steps": None if at is None else at + 1,
            "samples": None if at is None else sum(self.batch_sizes[: at + 1]),
            "seconds": None if at is None else self.seconds[at],
            "final_batch": self.final_batch,
            "final_loss": self.losses[-1] if self.losses else math.inf,
            "allreduce_bytes": self.allreduce_bytes,
            "wire_bytes": self.wire_bytes,
            "comm_seconds": self.comm_seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "base_lr": self.base_lr,
            "target": self.target,
            "batch_sizes": self.batch_sizes,
            "losses": self.losses,
            "step_seconds": self.seconds,
        }


def _rank_main(
    rank: int,
    world: int,
    port: int,
    solver: str,
    seed: int,
    base_lr: float,
    target: float,
    max_steps: int,
    record_indices: bool,
) -> dict[str, Any]:
    """One rank's run; rank 0 also returns the held-out losses."""
    dist = torch.distributed
    torch.set_num_threads(1)  # WORLD processes share the cores
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=_TIMEOUT,
    )
    try:
        train_x, train_y, test_x, test_y = optim_drop_muon.digits(seed, RESOLUTION)
        model = network(seed)
        adaptive = solver.startswith("AdAdaGrad")
        controller: AdaptiveBatchSize | None = None
        if adaptive:
            controller = AdaptiveBatchSize(
                "norm" if solver.endswith("norm") else "augmented",
                min_batch=MIN_BATCH,
                max_batch=MAX_BATCH,
            )
            sizes: RoundedUp | Fixed = RoundedUp(controller, world * MICRO_PER_RANK)
            trained: torch.nn.Module = model
        else:
            sizes = Fixed(int(solver.rsplit(" ", 1)[1]))
            trained = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.Adagrad(model.parameters(), lr=learning_rate(MIN_BATCH, base_lr))
        shard = torch.utils.data.DistributedSampler(
            range(len(train_y)), num_replicas=world, rank=rank, seed=seed, drop_last=True
        )
        sampler = AdaptiveBatchSampler(shard, sizes, num_replicas=world, drop_last=True)
        weights = sum(p.numel() for p in model.parameters())
        out: dict[str, Any] = {
            "rank": rank,
            "sizes": [],
            "step_seconds": [],
            "losses": [],
            "indices": [],
            "comm_seconds": 0.0,
            "allreduce_bytes": 0,
        }
        verdict = torch.zeros(1)
        epoch = 0
        dist.barrier()
        while not verdict.item() and len(out["sizes"]) < max_steps:
            sampler.set_epoch(epoch)
            epoch += 1
            for batch in sampler:
                began = time.perf_counter()
                global_batch = len(batch) * world
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(global_batch, base_lr)
                optimizer.zero_grad()
                x, y = train_x[batch], train_y[batch]
                if controller is not None:
                    out["comm_seconds"] += adaptive_step(
                        model, optimizer, controller, x, y, MICRO_PER_RANK
                    )
                    out["allreduce_bytes"] += 4 * (weights + 1)  # the sums and the count
                else:
                    loss = torch.nn.functional.cross_entropy(trained(x), y)
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                    out["allreduce_bytes"] += 4 * weights
                out["step_seconds"].append(time.perf_counter() - began)
                out["sizes"].append(global_batch)
                if record_indices:
                    out["indices"].append((epoch, list(batch)))
                if rank == 0:  # off the clock
                    with torch.no_grad():
                        held_out = float(torch.nn.functional.cross_entropy(model(test_x), test_y))
                    out["losses"].append(held_out)
                    verdict.fill_(float(smoothed(out["losses"]) <= target))
                dist.broadcast(verdict, src=0)
                if verdict.item() or len(out["sizes"]) >= max_steps:
                    break
        out["final_batch"] = sizes.batch_size
        digest = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        out["parameters_sum"] = float(digest.double().sum())
        return out
    finally:
        dist.destroy_process_group()


def _rank_entry(rank: int, args: tuple[Any, ...], conn: Any) -> None:
    try:
        conn.send((True, _rank_main(rank, *args)))
    except BaseException as error:  # the parent re-raises it with this traceback
        conn.send((False, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_ranks(
    solver: str,
    seed: int = 0,
    world: int = WORLD,
    base_lr: float = BASE_LR,
    target: float = TARGET,
    max_steps: int = MAX_STEPS,
    record_indices: bool = False,
    timeout: float = 1800.0,
) -> list[dict[str, Any]]:
    """Run ``solver`` on ``world`` spawned ranks; every rank's raw record, by rank."""
    check_choice(solver, "solver", SOLVERS)
    check_int(world, "world", minimum=2)
    check_int(max_steps, "max_steps", minimum=1)
    check_positive(base_lr, "base_lr")
    context = mp.get_context("spawn")
    args = (world, _free_port(), solver, seed, base_lr, target, max_steps, record_indices)
    pipes, processes = [], []
    for rank in range(world):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=_rank_entry, args=(rank, args, child), daemon=True)
        process.start()
        child.close()
        pipes.append(parent)
        processes.append(process)
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    try:
        for rank, pipe in enumerate(pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"rank {rank} of {solver!r} did not finish within {timeout} s")
            try:
                ok, value = pipe.recv()
            except EOFError as error:
                code = processes[rank].exitcode
                raise RuntimeError(f"rank {rank} of {solver!r} died (exit code {code})") from error
            if not ok:
                raise RuntimeError(f"rank {rank} of {solver!r} failed: {value}")
            records.append(value)
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
    return records


def assemble(
    solver: str, seed: int, base_lr: float, target: float, records: list[dict[str, Any]]
) -> Trajectory:
    """One :class:`Trajectory` from the ranks' records, after checking that they agree."""
    sizes = records[0]["sizes"]
    for record in records[1:]:
        if record["sizes"] != sizes:
            raise RuntimeError(f"{solver}: the ranks drew batches of different sizes")
    run = Trajectory(solver, seed, base_lr, target)
    run.batch_sizes = list(sizes)
    run.losses = list(records[0]["losses"])
    clock = 0.0
    for step in range(len(sizes)):
        clock += max(record["step_seconds"][step] for record in records)
        run.seconds.append(clock)
    if solver.startswith("AdAdaGrad"):
        run.comm_seconds = records[0]["comm_seconds"]
    if len({record["parameters_sum"] for record in records}) != 1:
        raise RuntimeError(f"{solver}: the ranks ended with different weights")
    run.allreduce_bytes = records[0]["allreduce_bytes"]
    run.final_batch = records[0]["final_batch"]
    return run
