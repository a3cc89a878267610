"""benches.workloads.schedule_adadagrad: the AdAdaGrad comparison shared by bench and demo."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benches.workloads import schedule_adadagrad as workload  # noqa: E402
from thrifty.errors import InvalidArgumentError  # noqa: E402


def test_a_capped_run_stops_at_max_steps_short_of_the_target() -> None:
    run = workload.train("AdAdaGrad augmented", max_steps=4)
    assert len(run.batch_sizes) == len(run.losses) == len(run.seconds) == 4
    assert not run.reached
    # The keys benches/bench_schedule.py records in extra_info.
    assert run.summary() == {
        "steps": 4,
        "samples": sum(run.batch_sizes),
        "final_batch": run.final_batch,
        "loss": run.losses[-1],
        "reached": False,
    }


def test_a_seeded_run_repeats_and_another_seed_differs() -> None:
    first = workload.train("fixed batch 256", max_steps=8, seed=1)
    again = workload.train("fixed batch 256", max_steps=8, seed=1)
    other = workload.train("fixed batch 256", max_steps=8, seed=2)
    assert first.batch_sizes == again.batch_sizes
    assert first.losses == again.losses
    assert first.losses != other.losses
    # 1797 samples: the 8th batch is the epoch's short last one.
    assert first.batch_sizes == [256] * 7 + [1797 - 7 * 256]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"solver": "fixed batch 17"}, "solver"),
        ({"solver": "fixed batch 16", "max_steps": 0}, "max_steps"),
    ],
)
def test_train_rejects_bad_arguments(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        workload.train(**kwargs)  # type: ignore[arg-type]
    assert error.value.argument == argument
