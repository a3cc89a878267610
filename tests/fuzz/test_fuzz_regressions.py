"""Regression tests for what the fuzz harness found in the Python layer.

Each input used to escape as a bare ``ValueError``, ``TypeError``, ``IndexError``,
``OverflowError``, ``ZeroDivisionError`` or ``RuntimeError``, or to return a wrong result;
now it is refused with a named :class:`thrifty.ThriftyError` or computed right.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import thrifty
from thrifty import coreset, diloco, hamming, optim, schedule, steps
from thrifty.diloco import compressors


def _linear(x: Any, t: Any) -> Any:
    return -x


REFUSED: dict[str, tuple[Callable[[], Any], type[thrifty.ThriftyError]]] = {
    "ragged_list_array": (lambda: steps.optimal_path([[1.0, 2.0], [3.0]], 1), thrifty.DTypeError),
    "simhash_bits_beyond_int32": (
        lambda: hamming.simhash(np.ones((2, 3)), 2**40),
        thrifty.InvalidArgumentError,
    ),
    "simhash_bits_beyond_memory": (
        lambda: hamming.simhash(np.ones((2, 3)), 2**70),
        thrifty.InvalidArgumentError,
    ),
    "simhash_seed_beyond_64_bits": (
        lambda: hamming.simhash(np.ones((2, 3)), 8, seed=2**64),
        thrifty.InvalidArgumentError,
    ),
    "time_grid_kind_array": (
        lambda: steps.time_grid(4, np.array(["edm", "uniform"])),
        thrifty.InvalidArgumentError,
    ),
    "time_grid_sigma_min_string": (
        lambda: steps.time_grid(4, "edm", sigma_min="a"),
        thrifty.InvalidArgumentError,
    ),
    "time_grid_huge_n": (lambda: steps.time_grid(2**62), thrifty.InvalidArgumentError),
    "time_grid_rho_infinite": (
        lambda: steps.time_grid(4, "edm", rho=math.inf),
        thrifty.InvalidArgumentError,
    ),
    "time_grid_rho_tiny": (
        lambda: steps.time_grid(4, "edm", rho=1e-300),
        thrifty.InvalidArgumentError,
    ),
    "shift_times_nan_shift": (
        lambda: steps.shift_times([0.0, 0.5, 1.0], math.nan),
        thrifty.InvalidArgumentError,
    ),
    "shift_times_string_shift": (
        lambda: steps.shift_times([0.0, 1.0], "x"),
        thrifty.InvalidArgumentError,
    ),
    "shift_times_outside_unit_interval": (
        lambda: steps.shift_times([-0.5, 2.0], 3.0),
        thrifty.InvalidArgumentError,
    ),
    "optimal_path_weight_string": (
        lambda: steps.optimal_path(np.zeros((3, 3)), 1, future_weight="x"),
        thrifty.InvalidArgumentError,
    ),
    "optimal_path_strategy_not_string": (
        lambda: steps.optimal_path(np.zeros((3, 3)), 1, strategy=5),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "optimal_path_huge_k": (
        lambda: steps.optimal_path(np.zeros((3, 3)), 2**70),
        thrifty.InvalidArgumentError,
    ),
    "sample_velocity_not_callable": (
        lambda: steps.sample("v", np.zeros((2, 2)), [0.0, 1.0]),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "sample_solver_array": (
        lambda: steps.sample(
            _linear, np.zeros((2, 2)), [0.0, 1.0], solver=np.array(["euler", "x"])
        ),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "cost_matrix_metric_array": (
        lambda: steps.cost_matrix(
            _linear, [0.0, 1.0], np.zeros((2, 2)), metric=np.array(["l2", "l1"]), progress=False
        ),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "straightening_loss_reduction_array": (
        lambda: steps.straightening_loss(
            _linear,
            (np.zeros((2, 2)), np.zeros(2), np.zeros((2, 2))),
            reduction=np.array(["mean", "x"]),
        ),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "bottleneck_plan_huge_k": (lambda: steps.bottleneck_plan(2**62), thrifty.InvalidArgumentError),
    "bottleneck_plan_renoise_without_transition": (
        lambda: steps.bottleneck_plan(4, ((1.0, 1.0),), renoise=1e300),
        thrifty.InvalidArgumentError,
    ),
    "bottleneck_plan_string_scale": (
        lambda: steps.bottleneck_plan(4, (("1.0", 1.0),)),
        thrifty.InvalidArgumentError,
    ),
    "bottleneck_stage_bool_scale": (
        lambda: steps.BottleneckStage(True, [0.0, 1.0]),
        thrifty.InvalidArgumentError,
    ),
    "bottleneck_stage_bytes_shift": (
        lambda: steps.BottleneckStage(1.0, [0.0, 1.0], b"2"),
        thrifty.InvalidArgumentError,
    ),
    "flow_nan_means": (
        lambda: steps.GaussianMixtureFlow(np.full((1, 2), math.nan), np.ones(1), np.ones(1)),
        thrifty.NonFiniteError,
    ),
    "flow_ring_fractional_modes": (
        lambda: steps.GaussianMixtureFlow.ring(modes=1.5),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "flow_solve_zero_steps": (
        lambda: steps.GaussianMixtureFlow.ring().solve(np.zeros((1, 2)), steps=0),
        thrifty.InvalidArgumentError,
    ),
    "flow_velocity_wrong_dimension": (
        lambda: steps.GaussianMixtureFlow.ring().velocity(np.zeros((2, 3)), np.zeros(2)),
        thrifty.ShapeError,
    ),
    "flow_sample_data_negative": (
        lambda: steps.GaussianMixtureFlow.ring().sample_data(-1),
        thrifty.InvalidArgumentError,
    ),
    "schedule_from_dict_bad_cost": (
        lambda: steps.Schedule.from_dict({"times": [0.0, 1.0], "cost": "x"}),
        thrifty.InvalidArgumentError,
    ),
    "schedule_from_dict_not_a_dict": (
        lambda: steps.Schedule.from_dict(None),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "schedule_seed_float": (
        lambda: steps.schedule(_linear, 1, n=2, samples=2, shape=(1,), seed=0.5, progress=False),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "schedule_n_string": (
        lambda: steps.schedule(_linear, 1, n="2", samples=2, shape=(1,), progress=False),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "index_load_not_an_index": (
        lambda: hamming.BinaryIndex.load(os.devnull),
        thrifty.InvalidArgumentError,
    ),
    "coreset_indices_past_rows": (
        lambda: coreset.Coreset([5], [1.0]).norms(np.eye(2), np.eye(2)),
        thrifty.ShapeError,
    ),
    "coreset_fractional_indices": (lambda: coreset.Coreset([0.5], [1.0]), thrifty.DTypeError),
    "coreset_negative_indices": (
        lambda: coreset.Coreset([-1], [1.0]),
        thrifty.InvalidArgumentError,
    ),
    "coreset_nan_weights": (lambda: coreset.Coreset([0], [math.nan]), thrifty.NonFiniteError),
    "kmeans_cost_no_centers": (
        lambda: coreset.kmeans_cost(np.eye(3), np.zeros((0, 3))),
        thrifty.ShapeError,
    ),
    "kmeans_cost_nan_points": (
        lambda: coreset.kmeans_cost(np.full((2, 2), math.nan), np.zeros((1, 2))),
        thrifty.NonFiniteError,
    ),
    "sample_huge_m": (lambda: coreset.sample(np.ones(3), 2**70), thrifty.InvalidArgumentError),
    "kmeans_huge_m": (lambda: coreset.kmeans(np.eye(3), 1, 2**70), thrifty.InvalidArgumentError),
    "rs2_huge_n": (lambda: coreset.RS2Sampler(2**64, 0.5), thrifty.InvalidArgumentError),
    "importance_huge_num_samples": (
        lambda: coreset.ImportanceSampler(np.ones(3), 2**62),
        thrifty.InvalidArgumentError,
    ),
    "leverage_eps_string": (
        lambda: coreset.leverage_scores(np.eye(3), method="sketch", eps="x"),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "leverage_method_array": (
        lambda: coreset.leverage_scores(np.eye(3), method=np.array(["qr", "x"])),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "embedding_method_array": (
        lambda: coreset.subspace_embedding(np.eye(3), 1.0, 2, method=np.array(["lewis", "x"])),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "lp_regression_p_string": (
        lambda: coreset.lp_regression(np.eye(3), np.ones(3), "x"),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "lp_regression_p_none": (
        lambda: coreset.lp_regression(np.eye(3), np.ones(3), None),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "lgreco_huge_buckets": (
        lambda: schedule.lgreco(np.ones((2, 2)), np.ones((2, 2)), 1.0, buckets=2**70),
        thrifty.InvalidArgumentError,
    ),
    "certificate_nan_step": (
        lambda: schedule.small_gain_certificate([1.0], [[0.0]], lipschitz=1.0).euler_factor(
            math.nan
        ),
        thrifty.InvalidArgumentError,
    ),
    "certificate_string_step": (
        lambda: schedule.small_gain_certificate([1.0], [[0.0]], lipschitz=1.0).rk4_factor("x"),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "small_gain_ragged_lipschitz": (
        lambda: schedule.small_gain_certificate(
            [1.0, 1.0], np.zeros((2, 2)), lipschitz=[[1.0], [1.0, 2.0]]
        ),
        thrifty.DTypeError,
    ),
    "adaptive_batch_test_array": (
        lambda: schedule.AdaptiveBatchSize(np.array(["norm", "x"])),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "newton_schulz_two_coefficients": (
        lambda: optim.newton_schulz(torch.ones(2, 2), coefficients=(1.0, 2.0)),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "newton_schulz_nan_eps": (
        lambda: optim.newton_schulz(torch.ones(2, 2), eps=math.nan),
        thrifty.InvalidArgumentError,
    ),
    "drop_muon_seed_beyond_64_bits": (
        lambda: optim.DropMuon([torch.nn.Linear(2, 2)], lr=0.02, seed=2**64),
        thrifty.InvalidArgumentError,
    ),
    "embedding_replace_string": (
        lambda: coreset.subspace_embedding(np.eye(3), 1.0, 2, method="uniform", replace="yes"),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "embedding_uniform_nan_matrix": (
        lambda: coreset.subspace_embedding(np.full((3, 2), math.nan), 1.0, 2, method="uniform"),
        thrifty.NonFiniteError,
    ),
    "muon_lr_beyond_float32": (
        lambda: optim.Muon([torch.nn.Parameter(torch.ones(2, 2))], lr=1e300),
        thrifty.InvalidArgumentError,
    ),
    "adamw_lr_beyond_float32": (
        lambda: optim.DropMuon([torch.nn.Linear(2, 2)], lr=0.02, adamw_lr=1e300),
        thrifty.InvalidArgumentError,
    ),
    "newton_schulz_eps_below_float32": (
        lambda: optim.newton_schulz(torch.zeros(2, 2), eps=5e-324),
        thrifty.InvalidArgumentError,
    ),
    "newton_schulz_eps_beyond_float32": (
        lambda: optim.newton_schulz(torch.ones(2, 2), eps=1e300),
        thrifty.InvalidArgumentError,
    ),
    "lewis_huge_iters": (
        lambda: coreset.lewis_weights(np.eye(3), 1.0, iters=2**70),
        thrifty.InvalidArgumentError,
    ),
    "bottleneck_plan_bytes_shift": (
        lambda: steps.bottleneck_plan(5, ((1.0, 1.0),), shift=b"1"),
        thrifty.InvalidArgumentError,
    ),
    "noloco_group_beyond_usize": (
        lambda: diloco.NoLoCo(
            torch.nn.Linear(1, 1),
            torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1),
            transport=object(),
            sync_every=1,
            outer_lr=0.5,
            beta=0.5,
            group_size=2**70,
        ),
        thrifty.InvalidArgumentError,
    ),
    "noloco_outer_lr_beyond_float32": (
        lambda: diloco.NoLoCo(
            torch.nn.Linear(1, 1),
            torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1),
            transport=object(),
            sync_every=1,
            outer_lr=1e300,
            beta=0.5,
        ),
        thrifty.InvalidArgumentError,
    ),
    "muon_adjust_lr_list": (
        lambda: optim.Muon([torch.nn.Parameter(torch.ones(2, 2))], adjust_lr=["original"]),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "pairing_groups_huge_group": (
        lambda: thrifty.collective.pairing_groups(4, 0, 2**70),
        thrifty.InvalidArgumentError,
    ),
    "comm_stats_missing_key": (
        lambda: diloco.CommStats.from_dict({"syncs": 1}),
        thrifty.InvalidArgumentError,
    ),
    "comm_stats_not_a_dict": (
        lambda: diloco.CommStats.from_dict("x"),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "block_quantizer_format_array": (
        lambda: compressors.BlockQuantizer(np.array(["int8", "fp4"])),
        thrifty.InvalidArgumentError,
    ),  # type: ignore[arg-type]
    "topk_decode_indices_out_of_range": (
        lambda: compressors.TopK(0.5).decode(torch.full((16,), 255, dtype=torch.uint8), 3, seed=0),
        thrifty.InvalidArgumentError,
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_input_is_refused_by_name(case: str) -> None:
    call, error = REFUSED[case]
    with pytest.raises(error) as info:
        call()
    assert not isinstance(info.value, thrifty.InternalError)
    assert info.value.argument


def test_shift_times_tiny_shift_stays_in_the_unit_interval() -> None:
    # The textbook denominator 1 + (s - 1) sigma cancelled to 0 at sigma = 1: NaN.
    out = steps.shift_times([0.0, 0.5, 1.0], 5e-324)
    assert np.isfinite(out).all()
    assert out[0] == 0.0
    assert out[-1] == 1.0


def test_kmeans_cost_of_far_points_is_not_nan() -> None:
    # |x|^2 - 2 x.c + |c|^2 overflowed to inf - inf for points near 1e160.
    x = np.array([[1e160, 0.0], [2e160, 0.0]])
    assert coreset.kmeans_cost(x, np.array([[1e160, 0.0]])) == math.inf  # (1e160)^2 overflows
    near = coreset.kmeans_cost(np.array([[1e150, 1.0]]), np.array([[1e150, 0.0]]))
    assert near == 1.0


def test_coreset_norms_of_a_huge_p_are_finite() -> None:
    a = np.random.default_rng(0).standard_normal((20, 3))
    c = coreset.Coreset(np.arange(20), np.ones(20), p=1e300)
    distortion = c.distortion(a, np.eye(3))
    assert distortion == pytest.approx(0.0, abs=1e-12)


def test_torch_distributed_avg_of_floats_divides_rather_than_floors() -> None:
    import fuzz_collective

    with fuzz_collective.torch_world_of_one():
        x = np.array([0.75, -0.25, 2.5], dtype=np.float32)
        thrifty.collective.TorchDistributed().all_reduce(x, op="avg")
        assert x.tolist() == [0.75, -0.25, 2.5]
        ints = np.array([3, -3], dtype=np.int64)
        thrifty.collective.TorchDistributed().all_reduce(ints, op="avg")
        assert ints.tolist() == [3, -3]


def test_all_gather_scalars_refuses_strings_by_name() -> None:
    import fuzz_collective

    with fuzz_collective.world_of_one() as comm, pytest.raises(thrifty.InvalidArgumentError):
        comm.all_gather_scalars(["a"])


def test_adagrad_norm_with_zero_eps_and_zero_gradients_does_not_divide_by_zero() -> None:
    x = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = optim.AdaGradNorm([x], eps=0.0)
    x.grad = torch.zeros(2)
    opt.step()
    assert x.detach().tolist() == [1.0, 2.0]


@pytest.mark.parametrize("eta", [5e-324, 1e300])
def test_adaptive_batch_size_with_an_extreme_tolerance_caps_the_batch(eta: float) -> None:
    # eta**2 underflowed to 0 (ZeroDivisionError) or overflowed (OverflowError).
    controller = schedule.AdaptiveBatchSize("norm", eta=eta, min_batch=2, max_batch=64)
    grads = [torch.tensor([1.0, 0.5]), torch.tensor([1.5, -0.5])]
    size = controller.update(grads, micro_batch_size=2)
    assert size == (64 if eta < 1 else 2)


def test_adagrad_norm_with_a_subnormal_eps_and_zero_gradients_keeps_the_parameters() -> None:
    # lr / 5e-324 is infinite, and infinity times a zero gradient was NaN.
    x = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = optim.AdaGradNorm([x], eps=5e-324)
    x.grad = torch.zeros(2)
    opt.step()
    assert x.detach().tolist() == [1.0, 2.0]


def test_adagrad_norm_step_beyond_float32_on_tiny_gradients() -> None:
    # lr / (b + eps) above float32's largest value: torch refused it as an alpha.
    x = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = optim.AdaGradNorm([x], eps=0.0)
    x.grad = torch.tensor([1e-40, 0.0])
    opt.step()
    assert x.detach().tolist() == [0.0, 2.0]


def test_muon_step_with_an_alpha_past_float32_is_applied() -> None:
    # lr times the shape factor sqrt(rows / cols) passed float32's range: torch refused the
    # alpha with a bare RuntimeError, though the step itself (entries ~ 1 / sqrt(rows)) fits.
    w = torch.nn.Parameter(torch.zeros(8, 2))
    opt = optim.Muon([w], lr=3e38)
    w.grad = torch.ones(8, 2)
    opt.step()
    assert bool(torch.isfinite(w).all())
    assert bool((w < -1e37).all())


def test_drop_muon_adamw_step_with_a_value_past_float32_is_applied() -> None:
    # AdamW's lr / (1 - beta1**step) passed float32's range as addcdiv's value.
    layer = torch.nn.Linear(2, 2)
    before = layer.bias.detach().clone()
    opt = optim.DropMuon([layer], lr=0.02, adamw_lr=3e38, adamw_betas=(0.9, 0.95))
    layer(torch.ones(1, 2)).sum().backward()
    opt.step()
    assert bool((layer.bias.detach() < before - 1e37).all())


def test_coreset_distortion_of_an_extreme_p_is_not_nan() -> None:
    a = np.random.default_rng(0).standard_normal((38, 4))
    for p in (1e-300, 1e300):
        c = coreset.Coreset(np.arange(0, 38, 2), np.full(19, 2.0), p=p)
        assert not math.isnan(c.distortion(a, np.eye(4)))


@pytest.mark.parametrize("initial_scale", [1e-300, 1e300])
def test_spsa_refuses_an_initial_scale_whose_square_leaves_float64(initial_scale: float) -> None:
    # 1e300 ** 2 raised OverflowError; 1e-300 squared to 0, and the first join then raised
    # InternalError ("the synced state is corrupt").
    import fuzz_collective

    model = torch.nn.Linear(2, 1)
    with fuzz_collective.world_of_one() as comm, pytest.raises(thrifty.InvalidArgumentError):
        diloco.SharedSeedSPSA(
            model, lambda m, b: m(b).sum(), transport=comm, lr=0.1, initial_scale=initial_scale
        )


def test_pair_average_refuses_a_group_beyond_usize() -> None:
    import fuzz_collective

    with fuzz_collective.world_of_one() as comm, pytest.raises(thrifty.InvalidArgumentError):
        comm.pair_average(np.ones(3, np.float32), 0, group_size=2**70)


def test_drop_muon_takes_a_seed_above_2_to_the_63() -> None:
    opt = optim.DropMuon([torch.nn.Linear(2, 2)], lr=0.02, seed=2**64 - 1)
    assert opt.begin_step() == 0


def test_diloco_takes_a_numpy_fragment_count() -> None:
    import fuzz_collective

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    with fuzz_collective.world_of_one() as comm:
        outer = diloco.DiLoCo(model, inner, transport=comm, sync_every=2, fragments=np.int64(2))
        outer.close()
    assert len(outer.fragments) == 2


def test_diloco_refuses_an_outer_lr_float32_cannot_hold() -> None:
    model = torch.nn.Linear(2, 1)
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(thrifty.InvalidArgumentError, match="outer_lr"):
        diloco.DiLoCo(model, inner, transport=object(), sync_every=2, outer_lr=1e300)


def test_block_quantizer_pads_a_short_vector_to_itself_not_to_the_block() -> None:
    # A block of 2**40 padded a 5-value vector to 2**40 floats (terabytes).
    q = compressors.BlockQuantizer("int8", block=2**40)
    x = torch.linspace(-1, 1, 5)
    payload = q.encode(x, seed=0)
    assert payload.numel() == q.payload_bytes(5)
    assert torch.allclose(q.decode(payload, 5, seed=0), x, atol=1 / 254)


def test_decode_of_an_empty_numpy_payload() -> None:
    empty = torch.from_numpy(np.zeros(0, dtype=np.uint8))
    assert compressors.TopK(0.5).decode(empty, 0, seed=0).numel() == 0
    assert compressors.RandomK(0.5).decode(empty, 0, seed=0).numel() == 0


def test_binary_index_load_refuses_a_truncated_archive() -> None:
    handle, path = tempfile.mkstemp(suffix=".npz")
    os.close(handle)
    try:
        with open(path, "wb") as file:
            file.write(b"PK\x03\x04 not a zip")
        with pytest.raises(thrifty.InvalidArgumentError):
            hamming.BinaryIndex.load(path)
    finally:
        os.unlink(path)
