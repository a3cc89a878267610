"""Time to accuracy of RS2 at 10 % of the data per epoch against full-data training.

The workload is :mod:`benches.workloads.coreset_rs2`: a 64-128-10 MLP on scikit-learn's digits,
SGD with Nesterov momentum and a cosine learning rate over the same number of epochs for
both runs (the comparison of Okanovic et al., arXiv 2305.18424). Each run is timed once
(``rounds=1``): what is reported is not the run's duration but the training seconds until
the test accuracy first reaches :data:`~benches.workloads.coreset_rs2.TARGET_ACCURACY`, in
``extra_info["seconds_to_target"]``, beside the total and the final accuracy. Under
``--benchmark-disable`` (``make test``) both runs are three epochs long and are checked to
have trained at all.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benches.workloads import coreset_rs2 as workload

FRACTION = 0.1


@pytest.fixture(scope="module")
def data() -> workload.Digits:
    return workload.digits(seed=0)


@pytest.mark.parametrize("fraction", [1.0, FRACTION], ids=["full data", "RS2 10%"])
def test_rs2_time_to_accuracy(benchmark: Any, data: workload.Digits, fraction: float) -> None:
    timed = not benchmark.disabled
    epochs = workload.EPOCHS if timed else 3
    benchmark.group = "coreset RS2 time to accuracy (digits)"
    curve = benchmark.pedantic(
        workload.train, args=(data,), kwargs={"fraction": fraction, "epochs": epochs}, rounds=1
    )
    seconds = curve.time_to(workload.TARGET_ACCURACY)
    benchmark.extra_info.update(
        role="ours" if fraction < 1.0 else "baseline",
        label=curve.name,
        target=workload.TARGET_ACCURACY,
        seconds_to_target=seconds,
        total_seconds=curve.seconds[-1],
        final_accuracy=curve.accuracy[-1],
        samples_seen=curve.samples_seen[-1],
    )
    n = int(data.x_train.shape[0])
    # Every epoch trains on ceil(fraction * n) samples, and training beats chance by far.
    assert curve.samples_seen[-1] == epochs * math.ceil(fraction * n)
    assert max(curve.accuracy) > 0.5
