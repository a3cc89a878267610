"""AdAdaGrad (adaptive batch size, arXiv 2402.11215) against fixed-batch AdaGrad.

The workload is :mod:`benches.workloads.schedule_adadagrad` (shared with
``examples/schedule_demo.py``): multinomial logistic regression on scikit-learn's digits,
trained with ``torch.optim.Adagrad`` until the loss on the whole training set falls below
``TARGET``.
Entries of one group:

- **AdAdaGrad norm** / **AdAdaGrad augmented**: batches from
  :class:`thrifty.schedule.AdaptiveBatchSampler`, sized by
  :class:`thrifty.schedule.AdaptiveBatchSize` (paper defaults, from ``min_batch`` 16 up to
  1024), each batch cut into 8 micro-batches whose gradients come from one vectorised
  ``torch.func`` pass and go to :meth:`~thrifty.schedule.AdaptiveBatchSize.update`;
- **fixed batch 16** and **fixed batch 256**: plain AdaGrad, one backward pass a batch.

Every run is seeded (model, sampler), so steps and samples are the same each round;
``extra_info`` records the optimizer steps, the samples drawn, the final batch size, and
whether the target was reached. The timed number is the wall time to the target, including
one full-data loss evaluation a step (the same for all entries). Under
``--benchmark-disable`` each entry runs once and must reach the target.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from benches.workloads import schedule_adadagrad as workload  # noqa: E402
from benches.workloads.schedule_adadagrad import (  # noqa: E402
    MAX_BATCH,
    MIN_BATCH,
    SOLVERS,
    TARGET,
)
from thrifty._extras import available  # noqa: E402

pytestmark = pytest.mark.skipif(
    not available("sklearn.datasets"), reason="needs scikit-learn (thrifty[datasets])"
)


def train(solver: str) -> dict[str, Any]:
    """Steps, samples and final state of one run to ``TARGET``."""
    return workload.train(solver).summary()


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
