"""benches.workloads.steps_digits: the Frechet distance, the shipped networks, and the three
measurements of the image benchmark on small settings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benches.workloads import steps_digits as workload  # noqa: E402
from benches.workloads.steps_digits import boss_table, bottleneck, straighten  # noqa: E402
from thrifty import steps  # noqa: E402


@pytest.fixture(scope="module")
def flow() -> workload.DigitsFlow:
    return workload.load_flow()


@pytest.fixture(scope="module")
def scorer() -> workload.FrechetScorer:
    return workload.FrechetScorer(workload.load_classifier(), workload.digits()[0])


def random_gaussian(rng: np.random.Generator, dim: int) -> workload.Gaussian:
    root = rng.standard_normal((dim, dim))
    return workload.Gaussian(rng.standard_normal(dim), root @ root.T + 0.1 * np.eye(dim))


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    mean_a, mean_b = rng.standard_normal(5), rng.standard_normal(5)
    std_a, std_b = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
    a = workload.Gaussian(mean_a, np.diag(std_a**2))
    b = workload.Gaussian(mean_b, np.diag(std_b**2))
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((std_a - std_b) ** 2)
    assert workload.frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_is_symmetric_zero_on_itself_and_rotation_invariant() -> None:
    rng = np.random.default_rng(1)
    a, b = random_gaussian(rng, 6), random_gaussian(rng, 6)
    distance = workload.frechet_distance(a, b)
    assert distance > 0
    assert workload.frechet_distance(b, a) == pytest.approx(distance, rel=1e-9)
    assert abs(workload.frechet_distance(a, a)) < 1e-9
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    turned = [
        workload.Gaussian(rotation @ g.mean, rotation @ g.covariance @ rotation.T) for g in (a, b)
    ]
    assert workload.frechet_distance(*turned) == pytest.approx(distance, rel=1e-9)


def test_digits_at_both_resolutions_are_area_means_of_each_other() -> None:
    full, labels = workload.digits()
    half, _ = workload.digits(size=workload.HALF)
    assert tuple(full.shape) == (1797, 1, 16, 16)
    assert tuple(half.shape) == (1797, 1, 8, 8)
    assert float(full.min()) >= -1.0
    assert float(full.max()) <= 1.0
    torch.testing.assert_close(half, torch.nn.functional.avg_pool2d(full, 2))
    assert sorted(set(labels.tolist())) == list(range(10))


def test_the_shipped_classifier_recognises_the_digits() -> None:
    images, labels = workload.digits()
    with torch.no_grad():
        predicted = workload.load_classifier()(images).argmax(1)
    assert float((predicted == labels).float().mean()) > 0.97


def test_the_flow_is_fully_convolutional_and_a_quarter_as_costly_at_half_size(flow) -> None:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        for size in (16, 8):
            x = torch.randn(3, 1, size, size)
            assert tuple(flow(x, torch.rand(3)).shape) == (3, 1, size, size)
    ratio = bottleneck.flops_per_image(flow, 16) / bottleneck.flops_per_image(flow, 8)
    assert 3.5 < ratio < 4.5


def test_frechet_distance_ranks_noise_above_samples_above_real_halves(flow, scorer) -> None:  # type: ignore[no-untyped-def]
    noise = boss_table.evaluation_noise(400, seed=0)
    generated = boss_table.generate(flow, noise, steps.time_grid(20))
    floor = boss_table.noise_floor(scorer)
    sampled = scorer.score(generated)
    unsampled = scorer.score(noise.clamp(-1, 1))
    assert floor < sampled < unsampled
    # One Euler step lands on the mean of the data: far worse than twenty.
    assert scorer.score(boss_table.generate(flow, noise, steps.time_grid(1))) > sampled


def test_boss_table_scores_every_method_and_auto_is_closest_to_the_teacher(flow, scorer) -> None:  # type: ignore[no-untyped-def]
    settings = replace(
        boss_table.Settings(), budgets=(2, 3), n=12, samples=6, refine_budget=2, fid_samples=120
    )
    result = boss_table.boss_table(flow, scorer, settings, progress=False)
    assert list(result["rows"]) == ["K=2", "K=3"]
    for key, row in result["rows"].items():
        assert set(boss_table.METHODS) <= set(row)
        assert all(np.isfinite(row[name]) and row[name] > 0 for name in boss_table.METHODS)
        distances = result["teacher_distances"][key]
        assert distances["auto"] == min(distances.values())
        times = result["schedules"][key]["auto"]
        assert len(times) == int(key[2:]) + 1
        assert times[0] == 0.0
        assert times[-1] == 1.0
    checked = boss_table.targets(result)
    assert checked["auto_never_worse_than_uniform"] == all(
        row["auto"] <= row["uniform"] for row in result["rows"].values()
    )


def test_straightening_lowers_its_loss_on_the_pairs(flow, scorer) -> None:  # type: ignore[no-untyped-def]
    knots = steps.schedule(
        flow, 3, n=12, samples=4, shape=(1, 16, 16), device="cpu", progress=False
    )
    short = replace(
        straighten.Straightening(), pairs_samples=64, epochs=3, batch_size=32, fid_samples=100
    )
    result = straighten.straighten(flow, scorer, knots, short, progress=False)
    assert result["loss_after"] < result["loss_before"]
    assert result["steps"] == 3 * 6
    assert result["k"] == 3
    assert np.isfinite(result["before"])
    assert np.isfinite(result["after"])
    # The fine-tuned copy is a copy: the shipped flow keeps its weights.
    assert not any(p.requires_grad for p in flow.parameters())


def test_bottleneck_plans_save_the_flops_their_stages_imply(flow, scorer) -> None:  # type: ignore[no-untyped-def]
    result = bottleneck.measure(flow, scorer, bottleneck.BottleneckRun(nfes=(10,), fid_samples=100))
    row = result["rows"]["NFE=10"]
    assert set(row) == set(bottleneck.PLANS)
    assert row["full"]["flops_saving"] == 1.0
    assert row["full"]["steps"] == [10]
    quarter = bottleneck.flops_per_image(flow, 8) / bottleneck.flops_per_image(flow, 16)
    default = row["high-low-high 0.2/0.6/0.2"]
    assert default["steps"] == [2, 6, 2]
    assert default["flops_saving"] == pytest.approx(10 / (4 + 6 * quarter))
    assert all(np.isfinite(m["fid"]) for m in row.values())
