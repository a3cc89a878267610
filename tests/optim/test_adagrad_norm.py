"""AdaGradNorm against a reference loop written from Ward, Wu, Bottou (arXiv 1806.01811),
its state_dict round trip, parameter groups, and bad input."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty.errors import InvalidArgumentError

torch = pytest.importorskip("torch")

from thrifty.optim import AdaGradNorm  # noqa: E402


def _problem(seed: int) -> tuple[Any, Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(20, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(20, generator=generator, dtype=torch.float64)
    x0 = torch.randn(4, generator=generator, dtype=torch.float64)
    return a, y, x0


def _gradient(a: Any, y: Any, x: Any) -> Any:
    return a.T @ (a @ x - y) / len(y)


def reference(a: Any, y: Any, x0: Any, steps: int, lr: float, b0_squared: float) -> Any:
    x, b_squared = x0.clone(), b0_squared
    for _ in range(steps):
        g = _gradient(a, y, x)
        b_squared += float(g @ g)
        x = x - lr / math.sqrt(b_squared) * g
    return x


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    lr=st.floats(0.01, 3.0),
    b0_squared=st.floats(0.0, 2.0),
    steps=st.integers(1, 30),
)
def test_matches_reference_loop(seed: int, lr: float, b0_squared: float, steps: int) -> None:
    a, y, x0 = _problem(seed)
    # two parameters in one group: the norm is over both together
    first = torch.nn.Parameter(x0[:1].clone())
    second = torch.nn.Parameter(x0[1:].clone())
    optimizer = AdaGradNorm([first, second], lr=lr, initial_accumulator_value=b0_squared, eps=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        g = _gradient(a, y, torch.cat([first, second]).detach())
        first.grad, second.grad = g[:1].clone(), g[1:].clone()
        optimizer.step()
    expected = reference(a, y, x0, steps, lr, b0_squared)
    assert torch.allclose(torch.cat([first, second]).detach(), expected, rtol=1e-12, atol=1e-12)


def test_converges_and_closure() -> None:
    a, y, x0 = _problem(1)
    x = torch.nn.Parameter(x0.clone())
    optimizer = AdaGradNorm([x], lr=1.0)

    def closure() -> float:
        optimizer.zero_grad()
        loss = 0.5 * ((a @ x - y) ** 2).mean()
        loss.backward()
        return float(loss.detach())

    losses = [optimizer.step(closure) for _ in range(300)]
    best = torch.linalg.lstsq(a, y[:, None]).solution[:, 0]
    optimum = float(0.5 * ((a @ best - y) ** 2).mean())
    assert losses[-1] is not None
    assert losses[0] is not None
    assert losses[-1] - optimum < 1e-3 * (losses[0] - optimum)


def test_groups_have_their_own_step_size() -> None:
    a = torch.nn.Parameter(torch.tensor([1.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = AdaGradNorm([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=1.0)
    a.grad, b.grad = torch.tensor([2.0]), torch.tensor([4.0])
    optimizer.step()
    assert a.item() == pytest.approx(1.0 - 1.0)  # lr * g / |g|
    assert b.item() == pytest.approx(1.0 - 0.5)
    weight_decay = torch.nn.Parameter(torch.tensor([3.0]))
    decayed = AdaGradNorm([weight_decay], weight_decay=1.0)
    weight_decay.grad = torch.tensor([1.0])
    decayed.step()  # g + x = 4, normalised: one step of lr
    assert weight_decay.item() == pytest.approx(2.0)


def test_state_dict_round_trip() -> None:
    a, y, x0 = _problem(2)
    runs = []
    for resume in (False, True):
        x = torch.nn.Parameter(x0.clone())
        optimizer = AdaGradNorm([x], lr=0.7, initial_accumulator_value=0.1)
        for step in range(10):
            if resume and step == 5:
                buffer = io.BytesIO()
                torch.save(optimizer.state_dict(), buffer)
                buffer.seek(0)
                x = torch.nn.Parameter(x.detach().clone())
                optimizer = AdaGradNorm([x], lr=0.7, initial_accumulator_value=0.1)
                optimizer.load_state_dict(torch.load(buffer))
            x.grad = _gradient(a, y, x.detach())
            optimizer.step()
        runs.append(x.detach())
        assert float(optimizer.state[x]["step"]) == 10
    assert torch.equal(runs[0], runs[1])


def test_bad_input_is_named() -> None:
    x = torch.nn.Parameter(torch.ones(2))
    for kwargs, name in [
        ({"lr": 0.0}, "lr"),
        ({"lr": math.inf}, "lr"),
        ({"eps": -1.0}, "eps"),
        ({"initial_accumulator_value": -0.5}, "initial_accumulator_value"),
        ({"weight_decay": math.nan}, "weight_decay"),
    ]:
        with pytest.raises(InvalidArgumentError) as error:
            AdaGradNorm([x], **kwargs)
        assert error.value.argument == name
    with pytest.raises(InvalidArgumentError) as error:
        AdaGradNorm([{"params": [x], "lr": -1.0}])
    assert error.value.argument == "lr"
    with pytest.raises(InvalidArgumentError) as error:
        AdaGradNorm(x)
    assert error.value.argument == "params"
    optimizer = AdaGradNorm([x])
    x.grad = torch.tensor([1.0, math.nan])
    with pytest.raises(InvalidArgumentError) as error:
        optimizer.step()
    assert error.value.argument == "params"
    assert torch.equal(x.detach(), torch.ones(2))  # a refused step moves nothing
