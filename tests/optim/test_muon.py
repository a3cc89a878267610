"""Muon and Newton-Schulz against plain-loop references written here."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from thrifty import optim  # noqa: E402
from thrifty.errors import InvalidArgumentError, ShapeError  # noqa: E402

A, B, C = 3.4445, -4.7750, 2.0315


def reference_newton_schulz(matrix: Any, steps: int = 5) -> Any:
    """One matrix at a time, unbatched, in float32 (what Muon runs on the CPU)."""
    x = matrix.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / max(float(x.norm()), 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = A * x + (B * gram + C * gram @ gram) @ x
    return x.T if tall else x


def with_spectrum(rows: int, cols: int, condition: float, seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=generator, dtype=torch.float64))
    k = min(rows, cols)
    singular = torch.logspace(0, -math.log10(condition), k, dtype=torch.float64)
    return ((u[:, :k] * singular) @ v[:, :k].T).float()


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(2, 96),
    cols=st.integers(2, 96),
    condition=st.floats(1.0, 10.0),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**31 - 1),
)
def test_newton_schulz_singular_values_in_band(
    rows: int, cols: int, condition: float, scale: float, seed: int
) -> None:
    # Measured band of 5 quintic steps for condition numbers <= 10: [0.682, 1.134].
    matrix = scale * with_spectrum(rows, cols, condition, seed)
    singular = torch.linalg.svdvals(optim.newton_schulz(matrix).double())
    assert singular.min() >= 0.67
    assert singular.max() <= 1.14


def test_newton_schulz_batch_equals_one_at_a_time() -> None:
    generator = torch.Generator().manual_seed(1)
    stack = torch.randn(5, 12, 7, generator=generator)
    batched = optim.newton_schulz(stack)
    for matrix, result in zip(stack, batched, strict=True):
        torch.testing.assert_close(result, reference_newton_schulz(matrix), atol=1e-5, rtol=1e-4)
    assert batched.shape == stack.shape
    assert batched.dtype == stack.dtype


def test_newton_schulz_keeps_zero_and_dtype() -> None:
    zero = torch.zeros(3, 4, dtype=torch.float64)
    result = optim.newton_schulz(zero)
    assert result.dtype == torch.float64
    assert torch.equal(result, zero)


def test_newton_schulz_bad_input() -> None:
    with pytest.raises(ShapeError) as error:
        optim.newton_schulz(torch.ones(3))
    assert error.value.argument == "matrices"
    with pytest.raises(InvalidArgumentError) as error:
        optim.newton_schulz([[1.0]])
    assert error.value.argument == "matrices"
    with pytest.raises(InvalidArgumentError) as error:
        optim.newton_schulz(torch.ones(2, 2), steps=0)
    assert error.value.argument == "steps"


class ReferenceMuon:
    """Muon written out per parameter, from the algorithm's statement."""

    def __init__(self, params: list[Any], **options: Any) -> None:
        self.params = params
        self.options = options
        self.buffers = [torch.zeros_like(p) for p in params]

    def step(self) -> None:
        lr, mu = self.options["lr"], self.options["momentum"]
        wd = self.options.get("weight_decay", 0.0)
        for param, buffer in zip(self.params, self.buffers, strict=True):
            grad = param.grad
            buffer.mul_(mu).add_((1 - mu) * grad)
            update = (1 - mu) * grad + mu * buffer if self.options["nesterov"] else buffer
            matrix = update.reshape(update.shape[0], -1)
            rows, cols = matrix.shape
            scale = {
                "original": max(1.0, rows / cols) ** 0.5,
                "match_rms_adamw": 0.2 * max(rows, cols) ** 0.5,
                "spectral_unclamped": (rows / cols) ** 0.5,
            }[self.options.get("adjust_lr", "original")]
            orthogonal = reference_newton_schulz(matrix).reshape(param.shape)
            with torch.no_grad():
                param.mul_(1 - lr * wd)
                param.sub_(lr * scale * orthogonal)


def model_for(seed: int) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, bias=False),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 16, bias=False),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16, bias=False),  # same shape as the next: one batched NS
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16, bias=False),
        torch.nn.Linear(16, 40, bias=False),  # tall
    )


def loss_of(model: Any, step: int) -> Any:
    generator = torch.Generator().manual_seed(100 + step)
    inputs = torch.randn(8, 2, 6, 6, generator=generator)
    return model(inputs).pow(2).mean()


@pytest.mark.parametrize(
    "options",
    [
        {"nesterov": True},
        {"nesterov": False},
        {"nesterov": True, "weight_decay": 0.1},
        {"nesterov": False, "momentum": 0.0, "adjust_lr": "match_rms_adamw"},
        {"nesterov": True, "adjust_lr": "spectral_unclamped", "momentum": 0.5},
    ],
    ids=["nesterov", "plain", "decay", "no-momentum-rms", "spectral"],
)
def test_muon_matches_reference(options: dict[str, Any]) -> None:
    full = {"lr": 0.02, "momentum": 0.95, **options}
    ours_model, reference_model = model_for(0), model_for(0)
    ours = optim.Muon(ours_model.parameters(), **full)
    reference = ReferenceMuon(list(reference_model.parameters()), **full)
    for step in range(4):
        for model in (ours_model, reference_model):
            model.zero_grad()
            loss_of(model, step).backward()
        ours.step()
        reference.step()
    for a, b in zip(ours_model.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    start = model_for(0)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(ours_model.parameters(), start.parameters(), strict=True)
    ]
    assert all(moved)


def test_state_dict_round_trip() -> None:
    model = model_for(1)
    opt = optim.Muon(model.parameters(), lr=0.01, weight_decay=0.01)
    for step in range(2):
        model.zero_grad()
        loss_of(model, step).backward()
        opt.step()
    twin = copy.deepcopy(model)
    twin_opt = optim.Muon(twin.parameters())
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert twin_opt.param_groups[0]["lr"] == 0.01
    for step in range(2, 4):
        for m, o in ((model, opt), (twin, twin_opt)):
            m.zero_grad()
            loss_of(m, step).backward()
            o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_parameters_without_grad_are_left_alone() -> None:
    model = model_for(2)
    opt = optim.Muon(model.parameters())
    model[0].weight.requires_grad_(False)
    before = model[0].weight.clone()
    loss_of(model, 0).backward()
    opt.step()
    assert torch.equal(model[0].weight, before)
    assert model[0].weight not in opt.state


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"nesterov": 1}, "nesterov"),
        ({"ns_steps": 0}, "ns_steps"),
        ({"ns_steps": 2.5}, "ns_steps"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"adjust_lr": "none"}, "adjust_lr"),
    ],
)
def test_bad_options_name_the_argument(options: dict[str, Any], argument: str) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        optim.Muon([torch.nn.Parameter(torch.ones(2, 2))], **options)
    assert error.value.argument == argument


def test_bad_group_options_and_vectors_rejected() -> None:
    matrix = torch.nn.Parameter(torch.ones(2, 2))
    with pytest.raises(InvalidArgumentError) as error:
        optim.Muon([{"params": [matrix], "lr": -1.0}])
    assert error.value.argument == "lr"
    with pytest.raises(ShapeError) as error:
        optim.Muon([matrix, torch.nn.Parameter(torch.ones(3))])
    assert error.value.argument == "params"
