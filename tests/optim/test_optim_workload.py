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


@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_every_resolution_feeds_the_hidden_layer_the_same_features(resolution: int) -> None:
    train_x, _, test_x, _ = workload.digits(0, resolution)
    assert train_x.shape[1:] == test_x.shape[1:] == (1, resolution, resolution)
    model, layers = workload.network(0, resolution)
    assert model(train_x[:2]).shape == (2, 10)
    assert layers[3].in_features == 256 * 4 * 4


def test_upsampling_keeps_the_images() -> None:
    small = workload.digits(0)[0][:4]
    large = workload.digits(0, 16)[0][:4]
    # Averaging 2x2 blocks of a bilinear 2x upsampling comes back to a blurred original:
    # close on average (pixels are 0.29 on average), off by up to a third at sharp strokes.
    pooled = torch.nn.functional.avg_pool2d(large, 2)
    assert (pooled - small).abs().mean() < 0.1
    assert (pooled - small).abs().max() < 0.35


@pytest.mark.parametrize("resolution", [0, 12, 8.0])
def test_bad_resolutions_are_refused(resolution: object) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        workload.network(0, resolution)  # type: ignore[arg-type]
    assert error.value.argument == "resolution"


def test_backward_costs_fall_when_more_layers_are_frozen() -> None:
    train_x, train_y, _, _ = workload.digits(0)
    model, layers = workload.network(0)
    before = [p.clone() for p in model.parameters()]
    costs, forward = workload.backward_costs(model, layers, train_x[:8], train_y[:8])
    assert len(costs) == 5
    assert all(c > 0 for c in costs)
    assert forward > 0
    # The convs' backward passes are the expensive part; the head's is a 128 x 10 product.
    assert min(costs[:4]) > 10 * costs[4]
    # Measured on a copy: the model is untouched.
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(InvalidArgumentError):
        workload.backward_costs(model, layers, train_x[:8], train_y[:8], clock="cycles")


def test_smoothness_is_positive_and_leaves_the_weights() -> None:
    train_x, train_y, _, _ = workload.digits(0)
    model, layers = workload.network(0)
    before = [p.clone() for p in model.parameters()]
    smoothness = workload.layer_smoothness(model, layers, train_x, train_y, batches=1, batch=32)
    assert len(smoothness) == 5
    assert all(s > 0 for s in smoothness)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_named_sampler_is_estimated_before_the_clock_starts() -> None:
    run = workload.train("drop-muon", seed=1, epochs=1, limit=300, sampler="cost", batch=100)
    assert len(run.distribution) == 5
    assert sum(run.distribution) == pytest.approx(1.0)
    assert run.estimate_seconds > 0
    assert "cost" in run.label
    assert run.steps == [1, 2, 3]


def test_lr_tuning_gives_each_method_the_same_grid_and_seeds() -> None:
    result = workload.tune_lr("drop-muon", [0.02, 0.1], [0, 1], epochs=1, limit=256, batch=128)
    assert result["method"] == "drop-muon"
    scores = result["mean_final_accuracy"]
    assert set(scores) == {0.02, 0.1}
    assert all(0.0 <= score <= 1.0 for score in scores.values())
    assert scores[result["best_lr"]] == max(scores.values())
    with pytest.raises(InvalidArgumentError) as error:
        workload.tune_lr("adam", [0.1], [0])
    assert error.value.argument == "method"
    with pytest.raises(InvalidArgumentError):
        workload.tune_lr("muon", [], [0])


def test_compare_trains_drop_muon_at_its_own_lr() -> None:
    same = workload.compare(0, 1, limit=256, batch=128)
    other = workload.compare(0, 1, limit=256, batch=128, drop_lr=0.001)
    # Muon is the same run; Drop-Muon at a 100x smaller lr learns something else
    assert other["curves"]["muon"]["accuracy"] == same["curves"]["muon"]["accuracy"]
    assert other["curves"]["drop-muon"]["accuracy"] != same["curves"]["drop-muon"]["accuracy"]
