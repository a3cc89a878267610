"""AdAdaGrad (adaptive batch size, arXiv 2402.11215) against fixed-batch AdaGrad.

Multinomial logistic regression on scikit-learn's digits (1797 images, 64 standardised
pixels, 10 classes), trained with ``torch.optim.Adagrad`` (lr 0.1) until the loss on the
whole training set falls below ``TARGET``. Entries of one group:

- **AdAdaGrad norm** / **AdAdaGrad augmented**: batches from
  :class:`thrifty.schedule.AdaptiveBatchSampler`, sized by
  :class:`thrifty.schedule.AdaptiveBatchSize` (paper defaults, from ``min_batch`` 16 up to
  1024), each batch run as 8 micro-batches of gradient accumulation read by
  :meth:`~thrifty.schedule.AdaptiveBatchSize.accumulate`;
- **fixed batch 16** and **fixed batch 256**: plain AdaGrad, one backward pass a batch.

Every run is seeded (model, sampler), so steps and samples are the same each round;
``extra_info`` records the optimizer steps, the samples drawn, the final batch size, and
whether the target was reached. The timed number is the wall time to the target, including
one full-data loss evaluation a step (the same for all entries). Under
``--benchmark-disable`` each entry runs once and must reach the target.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from thrifty._extras import available, require  # noqa: E402
from thrifty.schedule import AdaptiveBatchSampler, AdaptiveBatchSize  # noqa: E402

pytestmark = pytest.mark.skipif(
    not available("sklearn.datasets"), reason="needs scikit-learn (thrifty[datasets])"
)

TARGET = 0.1
LR = 0.1
MIN_BATCH, MAX_BATCH = 16, 1024
MICRO_BATCHES = 8  # micro-batches of gradient accumulation per batch
MAX_STEPS = 5000
SOLVERS = ("AdAdaGrad norm", "AdAdaGrad augmented", "fixed batch 16", "fixed batch 256")


@functools.cache
def digits() -> tuple[Any, Any]:
    data = require("sklearn.datasets").load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)  # constant border pixels have std 0
    return x, torch.tensor(data.target)


class _Multiple:
    """The controller's batch size rounded up to a multiple of the micro-batch count."""

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    @property
    def batch_size(self) -> int:
        size: int = self.controller.batch_size
        return MICRO_BATCHES * math.ceil(size / MICRO_BATCHES)


class _Fixed:
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size


def train(solver: str, *, seed: int = 0) -> dict[str, Any]:
    """Steps, samples and final state of one run to ``TARGET``."""
    x, y = digits()
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], 10)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=LR)
    adaptive = solver.startswith("AdAdaGrad")
    controller: Any
    if adaptive:
        test = "norm" if solver.endswith("norm") else "augmented"
        controller = AdaptiveBatchSize(test, min_batch=MIN_BATCH, max_batch=MAX_BATCH)
        sizes: Any = _Multiple(controller)
    else:
        controller = sizes = _Fixed(int(solver.rsplit(" ", 1)[1]))
    generator = torch.Generator().manual_seed(seed)
    sampler = AdaptiveBatchSampler(
        torch.utils.data.RandomSampler(range(len(y)), generator=generator),
        sizes,
        drop_last=adaptive,  # a short last batch cannot be cut into equal micro-batches
    )
    steps = samples = 0
    loss = math.inf
    while steps < MAX_STEPS and loss >= TARGET:
        for batch in sampler:
            optimizer.zero_grad()
            if adaptive:
                r = len(batch) // MICRO_BATCHES
                for j in range(MICRO_BATCHES):
                    part = batch[j * r : (j + 1) * r]
                    micro = torch.nn.functional.cross_entropy(model(x[part]), y[part])
                    (micro / MICRO_BATCHES).backward()
                    controller.accumulate(model, micro_batch_size=r)
            else:
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
            if adaptive:
                controller.update()
            steps += 1
            samples += len(batch)
            with torch.no_grad():
                loss = float(torch.nn.functional.cross_entropy(model(x), y))
            if loss < TARGET or steps >= MAX_STEPS:
                break
    return {
        "steps": steps,
        "samples": samples,
        "final_batch": controller.batch_size,
        "loss": loss,
        "reached": loss < TARGET,
    }


@pytest.mark.parametrize("solver", SOLVERS)
def test_steps_to_target(benchmark: Any, solver: str) -> None:
    torch.set_num_threads(1)  # a tiny model: threads only add contention
    benchmark.group = f"digits logistic regression to loss {TARGET}"
    role = "ours" if solver.startswith("AdAdaGrad") else "baseline"
    result = benchmark.pedantic(train, (solver,), rounds=3, iterations=1)
    benchmark.extra_info.update(role=role, label=solver, **result)
    assert result["reached"], result
    if role == "ours":
        assert MIN_BATCH <= result["final_batch"] <= MAX_BATCH
        # larger batches can only cut the optimizer steps of the small fixed batch
        assert result["steps"] <= train("fixed batch 16")["steps"]
