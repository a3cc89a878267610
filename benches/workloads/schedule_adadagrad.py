"""AdAdaGrad (adaptive batch sizes, arXiv 2402.11215) against fixed-batch AdaGrad.

Multinomial logistic regression on scikit-learn's digits (1797 images, 64 standardised
pixels, 10 classes), trained with ``torch.optim.Adagrad`` (lr ``LR``) until the loss on the
whole training set falls below ``TARGET``. The solvers (``SOLVERS``):

* ``"AdAdaGrad norm"`` and ``"AdAdaGrad augmented"``: batches from
  :class:`~thrifty.schedule.AdaptiveBatchSampler`, sized by
  :class:`~thrifty.schedule.AdaptiveBatchSize` (paper defaults, from ``MIN_BATCH`` up to
  ``MAX_BATCH``), each batch cut into ``MICRO_BATCHES`` micro-batches whose mean gradients
  come from one vectorised pass (``torch.func.vmap`` of ``torch.func.grad``) and go to
  :meth:`~thrifty.schedule.AdaptiveBatchSize.update`; the optimizer steps on their mean,
  which is the batch gradient (:meth:`~thrifty.schedule.AdaptiveBatchSize.write_gradient`);
* ``"fixed batch 16"`` and ``"fixed batch 256"``: plain AdaGrad, one backward pass a batch.

Every run is seeded (model, sampler), so its steps and batch sizes are the same each time.
The full-data loss is evaluated after every step, for all solvers alike, and the clock
includes it.

This is the workload of ``benches/bench_schedule.py`` and of ``examples/schedule_demo.py``.
The digits ship inside scikit-learn (``thrifty[datasets]``): nothing is downloaded.

Examples
--------
>>> from benches.workloads import schedule_adadagrad as workload
>>> run = workload.train("AdAdaGrad norm", max_steps=3)
>>> run.batch_sizes[0], run.batch_sizes[-1] > run.batch_sizes[0]  # grown by the norm test
(16, True)
>>> run.summary()["steps"], run.summary()["reached"]
(3, False)
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any

from thrifty._checks import check_choice
from thrifty._extras import require

require("torch")  # without torch, the error names the extra that installs it
import torch  # noqa: E402

from thrifty.errors import InvalidArgumentError  # noqa: E402
from thrifty.schedule import AdaptiveBatchSampler, AdaptiveBatchSize  # noqa: E402

TARGET = 0.1
LR = 0.1
MIN_BATCH, MAX_BATCH = 16, 1024
MICRO_BATCHES = 8  # micro-batches of gradient accumulation per batch
MAX_STEPS = 5000
SOLVERS = ("AdAdaGrad norm", "AdAdaGrad augmented", "fixed batch 16", "fixed batch 256")


@dataclass
class Trajectory:
    """One run, step by step: the batch size used, the full-data loss after the step
    (``losses``) and the seconds since the start.

    ``final_batch`` is the controller's batch size after the last step (the size the next
    step would have drawn).
    """

    solver: str
    batch_sizes: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    final_batch: int = 0
    target: float = TARGET

    @property
    def reached(self) -> bool:
        return bool(self.losses) and self.losses[-1] < self.target

    def summary(self) -> dict[str, Any]:
        """Steps, samples drawn, the final batch size and loss, and whether the target fell."""
        return {
            "steps": len(self.batch_sizes),
            "samples": sum(self.batch_sizes),
            "final_batch": self.final_batch,
            "loss": self.losses[-1] if self.losses else math.inf,
            "reached": self.reached,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "target": self.target,
            "batch_sizes": self.batch_sizes,
            "losses": self.losses,
            "seconds": self.seconds,
            **self.summary(),
        }


@functools.cache
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as standardised 64-pixel rows, and their labels."""
    data = require("sklearn.datasets").load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)  # constant border pixels have std 0
    return x, torch.tensor(data.target)


def micro_batch_gradients(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = MICRO_BATCHES
) -> torch.Tensor:
    """The ``(k, parameters)`` mean gradients of ``k`` equal micro-batches of ``x``, each
    row the parameters' gradients joined in order (``AdaptiveBatchSize.write_gradient``'s
    layout).

    One vectorised pass instead of a backward pass per micro-batch: on a small model,
    per-call overhead is most of a step.
    """
    func = torch.func
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(weights: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> Any:
        return torch.nn.functional.cross_entropy(func.functional_call(model, weights, (xs,)), ys)

    r = len(y) // k
    grads = func.vmap(func.grad(loss), in_dims=(None, 0, 0))(
        params, x[: k * r].reshape(k, r, *x.shape[1:]), y[: k * r].reshape(k, r)
    )
    return torch.cat([grads[name].reshape(k, -1) for name in names], dim=1)


def adaptive_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    controller: AdaptiveBatchSize,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int = MICRO_BATCHES,
) -> float:
    """One AdAdaGrad step on the batch ``(x, y)``: the test on its ``k`` micro-batches sizes
    the next batch, and the optimizer steps on their mean, the batch gradient (under
    ``torch.distributed``, averaged over every rank by the test's own all-reduce).

    Returns the seconds spent in the test (its all-reduces, under ``torch.distributed``).
    """
    micro_grads = micro_batch_gradients(model, x, y, k)
    began = time.perf_counter()
    controller.update(list(micro_grads), micro_batch_size=len(y) // k)
    seconds = time.perf_counter() - began
    controller.write_gradient(model)
    optimizer.step()
    return seconds


class RoundedUp:
    """The controller's batch size rounded up to a multiple of ``unit`` (the micro-batches
    of a step, over every rank), so that each micro-batch has the same size."""

    def __init__(self, controller: AdaptiveBatchSize, unit: int = MICRO_BATCHES) -> None:
        self.controller = controller
        self.unit = unit

    @property
    def batch_size(self) -> int:
        return self.unit * math.ceil(self.controller.batch_size / self.unit)


class Fixed:
    """A batch size that never changes, for the sampler of a fixed-batch baseline."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size


def train(
    solver: str, *, seed: int = 0, target: float = TARGET, max_steps: int = MAX_STEPS
) -> Trajectory:
    """Train with ``solver`` (one of ``SOLVERS``) until the full-data loss is below
    ``target``, or for ``max_steps`` steps."""
    check_choice(solver, "solver", SOLVERS)
    if max_steps < 1:
        raise InvalidArgumentError(f"max_steps must be at least 1, got {max_steps}", "max_steps")
    x, y = digits()
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], 10)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=LR)
    adaptive = solver.startswith("AdAdaGrad")
    controller: AdaptiveBatchSize | Fixed
    sizes: RoundedUp | Fixed
    if adaptive:
        controller = AdaptiveBatchSize(
            "norm" if solver.endswith("norm") else "augmented",
            min_batch=MIN_BATCH,
            max_batch=MAX_BATCH,
        )
        sizes = RoundedUp(controller)
    else:
        controller = sizes = Fixed(int(solver.rsplit(" ", 1)[1]))
    generator = torch.Generator().manual_seed(seed)
    sampler = AdaptiveBatchSampler(
        torch.utils.data.RandomSampler(range(len(y)), generator=generator),
        sizes,
        drop_last=adaptive,  # a short last batch cannot be cut into equal micro-batches
    )
    run = Trajectory(solver, target=target)
    began = time.perf_counter()
    while len(run.batch_sizes) < max_steps and not run.reached:
        for batch in sampler:
            optimizer.zero_grad()
            if isinstance(controller, AdaptiveBatchSize):
                adaptive_step(model, optimizer, controller, x[batch], y[batch])
            else:
                batch_loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
                batch_loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            with torch.no_grad():
                loss = float(torch.nn.functional.cross_entropy(model(x), y))
            run.batch_sizes.append(len(batch))
            run.losses.append(loss)
            run.seconds.append(time.perf_counter() - began)
            if run.reached or len(run.batch_sizes) >= max_steps:
                break
    run.final_batch = controller.batch_size
    return run
