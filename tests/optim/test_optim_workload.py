"""benches.workloads.optim_drop_muon: the Drop-Muon against Muon comparison shared by the
benchmark and the demo."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benches.workloads import optim_drop_muon as workload  # noqa: E402
from thrifty.errors import InvalidArgumentError  # noqa: E402


def run(seconds: list[float], accuracy: list[float]) -> workload.Run:
    return workload.Run(
        "r",
        5,
        seconds=seconds,
        steps=list(range(1, len(seconds) + 1)),
        loss=[1.0] * len(seconds),
        accuracy=accuracy,
    )


def test_final_accuracy_is_the_mean_of_the_last_evaluations() -> None:
    r = run([1.0, 2.0, 3.0, 4.0], [0.1, 0.5, 0.6, 0.7])
    assert workload.FINAL_EVALS == 3
    assert r.final_accuracy == pytest.approx(0.6)
    # Crossings are taken on the same running mean: (0.1, 0.5, 0.6) -> 0.4, then 0.6.
    assert r.seconds_to(0.55) == 4.0
    assert r.seconds_to(0.35) == 3.0
    assert r.seconds_to(0.8) is None


def test_summary_has_no_speedup_when_a_run_misses_the_target() -> None:
    muon = run([1.0, 2.0, 3.0], [0.9, 0.9, 0.9])
    slow = run([1.0, 2.0, 3.0], [0.5, 0.6, 0.7])
    fast = run([0.5, 1.0, 1.5], [0.9, 0.9, 0.9])
    assert workload.summary(muon, slow)["speedup"] is None
    assert workload.summary(muon, slow)["drop_seconds_to_target"] is None
    assert workload.summary(muon, fast)["speedup"] == pytest.approx(2.0)


def test_both_methods_take_the_same_steps_and_drop_muon_records_its_starts() -> None:
    muon = workload.train("muon", seed=3, epochs=1, limit=600)
    drop = workload.train("drop-muon", seed=3, epochs=1, limit=600)
    assert muon.steps == drop.steps == [1, 2, 3]
    assert muon.starts == []
    assert len(drop.starts) == 3
    assert all(0 <= s < drop.layers for s in drop.starts)
    data = drop.to_dict()
    assert sum(data["start_counts"]) == 3
    assert data["mean_layers_trained"] == pytest.approx(5 - sum(drop.starts) / 3)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"method": "adam"}, "method"), ({"method": "muon", "epochs": 0}, "epochs")],
)
def test_train_rejects_bad_arguments(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        workload.train(**kwargs)  # type: ignore[arg-type]
    assert error.value.argument == argument
