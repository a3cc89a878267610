"""AdaptiveBatchSize: the tests from micro-batch means against per-sample brute force, the
estimator's bias for micro-batches of several samples, monotonicity and bounds, the
accumulation hook, checkpoints, the resizable batch sampler, and bad input."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thrifty.errors import DTypeError, InvalidArgumentError, NonFiniteError, ShapeError

torch = pytest.importorskip("torch")

from thrifty.schedule import AdaptiveBatchSampler, AdaptiveBatchSize  # noqa: E402

TESTS = ("norm", "inner_product", "augmented")


def _model(seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return model


def _data(seed: int, n: int) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(seed + 1)
    inputs = torch.randn(n, 5, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (n,), generator=generator)
    return inputs, targets


def _gradient(model: Any, inputs: Any, targets: Any) -> Any:
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    return torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])


def _per_sample(model: Any, inputs: Any, targets: Any) -> Any:
    return torch.stack(
        [_gradient(model, inputs[i : i + 1], targets[i : i + 1]) for i in range(len(inputs))]
    )


def brute_force(test: str, g: Any, *, eta: float, theta: float, nu: float) -> float:
    """The paper's tests written on per-sample gradients ``g`` (one row each)."""
    b = g.shape[0]
    mean = g.mean(0)
    square = float(mean @ mean)
    norm = float(g.var(0, unbiased=True).sum()) / (eta**2 * square)
    inner = float((g @ mean).var(unbiased=True)) / (theta**2 * square**2)
    projections = (g @ mean)[:, None] / square * mean[None, :]
    orthogonal = float((g - projections).square().sum()) / (b - 1) / (nu**2 * square)
    return {"norm": norm, "inner_product": inner, "augmented": max(inner, orthogonal)}[test]


OPTIONS = {"eta": 0.3, "theta": 0.7, "nu": 2.0}


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_micro_batches_of_one_match_per_sample_brute_force(test: str, seed: int) -> None:
    model = _model(seed)
    inputs, targets = _data(seed, 12)
    g = _per_sample(model, inputs, targets)
    expected = brute_force(test, g, **OPTIONS)
    # per-parameter lists, as a training loop would hand them over
    shapes = [p.shape for p in model.parameters()]
    as_lists = [list(torch.split(row, [math.prod(s) for s in shapes])) for row in g]
    as_lists = [
        [piece.reshape(s) for piece, s in zip(row, shapes, strict=True)] for row in as_lists
    ]
    for grads in (list(g), as_lists):
        controller = AdaptiveBatchSize(test, min_batch=1, max_batch=10**9, **OPTIONS)
        result = controller.update(grads, micro_batch_size=1)
        assert controller.last_estimate == pytest.approx(expected, rel=1e-10)
        assert result == max(1, math.ceil(controller.last_estimate))


@pytest.mark.parametrize("test", TESTS)
def test_accumulation_hook_matches_brute_force(test: str) -> None:
    model = _model(3)
    inputs, targets = _data(3, 10)
    expected = brute_force(test, _per_sample(model, inputs, targets), **OPTIONS)
    controller = AdaptiveBatchSize(test, min_batch=1, max_batch=10**9, **OPTIONS)
    # The hook's direction lags a step: the second pass over the same batch uses the
    # first pass's exact mean direction, so all tests must agree with brute force there.
    for _ in range(2):
        model.zero_grad()
        for i in range(len(inputs)):
            # accumulation as users write it: loss scaled by the number of micro-batches
            loss = torch.nn.functional.cross_entropy(model(inputs[i : i + 1]), targets[i : i + 1])
            (loss / len(inputs)).backward()
            controller.accumulate(model, micro_batch_size=1)
        controller.update()
        if test == "norm":  # needs no direction: exact from the first step on
            assert controller.last_estimate == pytest.approx(expected, rel=1e-9)
        elif controller.steps == 1:  # no direction yet: keep the batch size
            assert math.isnan(controller.last_estimate)
            assert controller.batch_size == 1
    assert controller.last_estimate == pytest.approx(expected, rel=1e-9)
    assert controller.steps == 2


def test_hook_and_list_agree_for_larger_micro_batches() -> None:
    model = _model(4)
    inputs, targets = _data(4, 24)
    r = 4
    grads = [_gradient(model, inputs[j : j + r], targets[j : j + r]) for j in range(0, 24, r)]
    listed = AdaptiveBatchSize("norm", min_batch=1, max_batch=10**9)
    listed.update(grads, micro_batch_size=r)
    hooked = AdaptiveBatchSize("norm", min_batch=1, max_batch=10**9)
    model.zero_grad()
    for j in range(0, 24, r):
        torch.nn.functional.cross_entropy(model(inputs[j : j + r]), targets[j : j + r]).backward()
        hooked.accumulate(list(model.parameters()), micro_batch_size=r)
    hooked.update()
    assert hooked.last_estimate == pytest.approx(listed.last_estimate, rel=1e-9)


def _synthetic(generator: Any, k: int, r: int, mean: Any, scale: Any) -> list[Any]:
    samples = mean + scale * torch.randn(
        k, r, mean.numel(), generator=generator, dtype=torch.float64
    )
    return list(samples.mean(1))


@pytest.mark.parametrize("r", [2, 8])
def test_micro_batch_variance_is_unbiased(r: int) -> None:
    """E[estimate * eta^2 ||gbar||^2] = tr(Sigma) when samples are independent."""
    generator = torch.Generator().manual_seed(r)
    mean = torch.tensor([1.0, -0.5, 0.25, 0.0], dtype=torch.float64)
    scale = torch.tensor([2.0, 1.0, 0.5, 3.0], dtype=torch.float64)
    trace = float(scale.square().sum())
    controller = AdaptiveBatchSize("norm", eta=1.0, min_batch=1, max_batch=10**12)
    trials = [
        _synthetic(generator, 3, r, mean, scale) for _ in range(3000)
    ]  # k = 3: few degrees of freedom, so a biased estimator would show
    estimates = []
    for grads in trials:
        controller.update(grads, micro_batch_size=r)
        gbar = torch.stack(grads).mean(0)
        estimates.append(controller.last_estimate * float(gbar @ gbar))
    average = sum(estimates) / len(estimates)
    # the estimate has standard deviation about trace * sqrt(2 / 2) over one trial
    assert abs(average - trace) < 4 * trace / math.sqrt(len(estimates))


@pytest.mark.parametrize("test", TESTS)
def test_micro_batch_estimate_is_consistent(test: str) -> None:
    """Many micro-batches: the estimate approaches the population value of the test."""
    generator = torch.Generator().manual_seed(11)
    mean = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    scale = torch.tensor([1.5, 1.0, 2.0], dtype=torch.float64)
    square = float(mean @ mean)
    variance = scale.square()
    u = mean / mean.norm()
    along = float((u.square() * variance).sum())
    population = {
        "norm": float(variance.sum()) / (0.5**2 * square),
        "inner_product": along / (0.8**2 * square),
        "augmented": max(
            along / (0.8**2 * square), (float(variance.sum()) - along) / (3.0**2 * square)
        ),
    }[test]
    controller = AdaptiveBatchSize(test, eta=0.5, theta=0.8, nu=3.0, min_batch=1, max_batch=10**9)
    controller.update(_synthetic(generator, 4000, 5, mean, scale), micro_batch_size=5)
    assert controller.last_estimate == pytest.approx(population, rel=0.08)


@settings(max_examples=40, deadline=None)
@given(
    seeds=st.lists(st.integers(0, 2**16), min_size=1, max_size=8),
    noise=st.floats(0.0, 5.0),
    min_batch=st.integers(1, 64),
    spread=st.integers(0, 200),
)
def test_never_shrinks_and_stays_in_bounds(
    seeds: list[int], noise: float, min_batch: int, spread: int
) -> None:
    max_batch = min_batch + spread
    controller = AdaptiveBatchSize("augmented", min_batch=min_batch, max_batch=max_batch)
    assert controller.batch_size == min_batch
    previous = min_batch
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        mean = torch.randn(6, generator=generator, dtype=torch.float64)
        grads = _synthetic(generator, 4, 2, mean, torch.full((6,), noise, dtype=torch.float64))
        size = controller.update(grads, micro_batch_size=2)
        assert previous <= size <= max_batch
        assert size == controller.batch_size
        if controller.last_estimate <= max_batch:
            assert size == max(previous, math.ceil(controller.last_estimate))
        previous = size


def test_grows_with_noise_and_caps() -> None:
    generator = torch.Generator().manual_seed(5)
    mean = torch.ones(4, dtype=torch.float64)
    quiet = AdaptiveBatchSize("norm", min_batch=8, max_batch=10**6)
    loud = AdaptiveBatchSize("norm", min_batch=8, max_batch=10**6)
    quiet.update(_synthetic(generator, 8, 4, mean, 0.01 * mean), micro_batch_size=4)
    loud.update(_synthetic(generator, 8, 4, mean, 10.0 * mean), micro_batch_size=4)
    assert quiet.batch_size == 8  # the test passes at once: keep min_batch
    assert loud.batch_size > 1000
    capped = AdaptiveBatchSize("norm", min_batch=8, max_batch=100)
    assert capped.update(_synthetic(generator, 8, 4, mean, 10.0 * mean), micro_batch_size=4) == 100
    zero = AdaptiveBatchSize("inner_product", min_batch=8, max_batch=100)
    assert zero.update([torch.ones(3), -torch.ones(3)], micro_batch_size=1) == 100
    assert math.isinf(zero.last_estimate)


def test_state_dict_round_trip() -> None:
    generator = torch.Generator().manual_seed(9)
    mean = torch.ones(5, dtype=torch.float64)
    first = AdaptiveBatchSize("augmented", min_batch=2, max_batch=10**6)
    second = AdaptiveBatchSize("augmented", min_batch=2, max_batch=10**6)
    model = _model(9)
    inputs, targets = _data(9, 6)
    for i in range(6):
        torch.nn.functional.cross_entropy(model(inputs[i : i + 1]), targets[i : i + 1]).backward()
        first.accumulate(model, micro_batch_size=1)
    first.update()
    first.update(_synthetic(generator, 4, 2, mean, mean), micro_batch_size=2)
    buffer = io.BytesIO()  # through torch.save, like any checkpoint
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second.load_state_dict(torch.load(buffer))
    assert second.batch_size == first.batch_size
    assert second.steps == first.steps == 2
    assert second.last_estimate == first.last_estimate
    grads = _synthetic(generator, 4, 2, mean, 3 * mean)
    assert second.update(grads, micro_batch_size=2) == first.update(grads, micro_batch_size=2)
    assert second.last_estimate == first.last_estimate
    with pytest.raises(InvalidArgumentError) as error:
        second.load_state_dict({"batch_size": 1, "steps": 0, "last_estimate": 0, "direction": None})
    assert error.value.argument == "state"
    with pytest.raises(InvalidArgumentError):
        second.load_state_dict({"batch_size": 4})


def test_bad_input_is_named() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"test": "variance"}, "test"),
        ({"eta": 0.0}, "eta"),
        ({"theta": -1.0}, "theta"),
        ({"nu": math.nan}, "nu"),
        ({"min_batch": 0}, "min_batch"),
        ({"min_batch": 10, "max_batch": 5}, "max_batch"),
        ({"max_batch": 2.5}, "max_batch"),
    ]
    for kwargs, name in cases:
        test = kwargs.pop("test", "norm")
        with pytest.raises(InvalidArgumentError) as error:
            AdaptiveBatchSize(test, **kwargs)
        assert error.value.argument == name
    controller = AdaptiveBatchSize()
    with pytest.raises(InvalidArgumentError, match="at least 2") as error:
        controller.update([torch.ones(3)], micro_batch_size=1)
    assert error.value.argument == "micro_batch_grads"
    with pytest.raises(InvalidArgumentError) as error:
        controller.update([torch.ones(3), torch.ones(3)])
    assert error.value.argument == "micro_batch_size"
    with pytest.raises(ShapeError) as error:
        controller.update([torch.ones(3), torch.ones(4)], micro_batch_size=1)
    assert error.value.argument == "micro_batch_grads"
    with pytest.raises(NonFiniteError):
        controller.update([torch.ones(3), torch.tensor([1.0, math.inf, 0.0])], micro_batch_size=1)
    with pytest.raises(DTypeError):
        controller.update([torch.ones(3, dtype=torch.int64)] * 2, micro_batch_size=1)
    with pytest.raises(DTypeError):
        controller.update(["gradient", "gradient"], micro_batch_size=1)
    with pytest.raises(InvalidArgumentError) as error:
        controller.update()  # nothing accumulated
    assert error.value.argument == "micro_batch_grads"
    model = _model(0)
    controller.accumulate(model, micro_batch_size=2)
    with pytest.raises(InvalidArgumentError) as error:
        controller.accumulate(model, micro_batch_size=3)
    assert error.value.argument == "micro_batch_size"
    assert controller.batch_size == 32  # failed calls leave the batch size alone


# --- the batch sampler --------------------------------------------------------------------


class _Controller:
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_sampler_covers_every_index_once_while_resizing(
    n: int, sizes: list[int], seed: int
) -> None:
    controller = _Controller(sizes[0])
    generator = torch.Generator().manual_seed(seed)
    sampler = AdaptiveBatchSampler(
        torch.utils.data.RandomSampler(range(n), generator=generator), controller
    )
    seen: list[int] = []
    for step, batch in enumerate(sampler):
        expected = controller.batch_size
        assert len(batch) == expected or len(seen) + len(batch) == n
        seen.extend(batch)
        controller.batch_size = sizes[(step + 1) % len(sizes)]
    assert sorted(seen) == list(range(n))


def test_sampler_with_dataloader_and_controller() -> None:
    dataset = torch.utils.data.TensorDataset(torch.arange(50))
    controller = AdaptiveBatchSize("norm", min_batch=4, max_batch=16)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=AdaptiveBatchSampler(range(50), controller)
    )
    lengths, seen = [], []
    noise = torch.tensor([0.0, 5.0])
    for (batch,) in loader:
        lengths.append(len(batch))
        seen.extend(batch.tolist())
        if len(lengths) == 2:  # noisy gradients: the controller grows mid-epoch
            controller.update([torch.ones(2) + noise, torch.ones(2) - noise], micro_batch_size=2)
    assert lengths[:3] == [4, 4, 16]
    assert sorted(seen) == list(range(50))
    assert sum(lengths) == 50


def test_sampler_resumes_mid_epoch() -> None:
    def order(seed: int) -> Any:
        return torch.utils.data.RandomSampler(
            range(23), generator=torch.Generator().manual_seed(seed)
        )

    controller = _Controller(3)
    sampler = AdaptiveBatchSampler(order(4), controller)
    batches = iter(sampler)
    seen = [*next(batches), *next(batches)]
    controller.batch_size = 5
    seen += next(batches)
    state = sampler.state_dict()
    assert state == {"consumed": 11}
    restored = AdaptiveBatchSampler(order(4), controller)  # a fresh process, same seed
    restored.load_state_dict(state)
    seen += [i for batch in restored for i in batch]
    assert sorted(seen) == list(range(23))
    assert restored.state_dict() == {"consumed": 23}
    # the skip applies once: the next epoch starts from its first index
    assert sum(len(b) for b in restored) == 23
    with pytest.raises(InvalidArgumentError) as error:
        restored.load_state_dict({"consumed": -1})
    assert error.value.argument == "state"


def test_sampler_options() -> None:
    controller = _Controller(5)
    dropped = AdaptiveBatchSampler(range(12), controller, drop_last=True)
    assert list(dropped) == [list(range(5)), list(range(5, 10))]
    halves = AdaptiveBatchSampler(range(12), controller, num_replicas=2)
    assert [len(b) for b in halves] == [3, 3, 3, 3]

    class Epochs(list[int]):
        epoch = -1

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    inner = Epochs(range(4))
    AdaptiveBatchSampler(inner, controller).set_epoch(7)
    assert inner.epoch == 7
    with pytest.raises(InvalidArgumentError) as error:
        AdaptiveBatchSampler(range(3), object())  # type: ignore[arg-type]
    assert error.value.argument == "controller"
    with pytest.raises(InvalidArgumentError) as error:
        AdaptiveBatchSampler(range(3), controller, num_replicas=0)
    assert error.value.argument == "num_replicas"
    with pytest.raises(InvalidArgumentError) as error:
        AdaptiveBatchSampler(5, controller)  # type: ignore[arg-type]
    assert error.value.argument == "sampler"
    controller.batch_size = 0
    with pytest.raises(InvalidArgumentError) as error:
        list(AdaptiveBatchSampler(range(3), controller))
    assert error.value.argument == "controller"


def test_write_gradient_is_the_batch_gradient_in_both_modes() -> None:
    """Micro-batch losses taken as their own means: the written gradient is the batch's."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    inputs, targets = torch.randn(12, 3), torch.randint(0, 2, (12,))

    def loss(part: slice) -> Any:
        return torch.nn.functional.cross_entropy(model(inputs[part]), targets[part])

    model.zero_grad()
    loss(slice(None)).backward()
    batch = [p.grad.clone() for p in model.parameters()]
    listed, hooked = AdaptiveBatchSize(min_batch=2), AdaptiveBatchSize(min_batch=2)
    model.zero_grad()
    for j in range(4):
        loss(slice(3 * j, 3 * j + 3)).backward()
        hooked.accumulate(model, micro_batch_size=3)
    hooked.update()
    micro = []
    for j in range(4):
        model.zero_grad()
        loss(slice(3 * j, 3 * j + 3)).backward()
        micro.append([p.grad.clone() for p in model.parameters()])
    listed.update(micro, micro_batch_size=3)
    for controller in (listed, hooked):
        model.zero_grad()
        controller.write_gradient(model)
        for p, expected in zip(model.parameters(), batch, strict=True):
            assert torch.allclose(p.grad, expected, atol=1e-6)


def test_write_gradient_refuses_bad_input() -> None:
    controller = AdaptiveBatchSize(min_batch=2)
    layer = torch.nn.Linear(2, 1)
    with pytest.raises(InvalidArgumentError) as error:
        controller.write_gradient(layer)  # no update yet
    assert error.value.argument == "parameters"
    controller.update([torch.ones(3), torch.zeros(3)], micro_batch_size=1)
    with pytest.raises(ShapeError) as shape:
        controller.write_gradient(layer.weight)  # 2 elements, not 3
    assert shape.value.argument == "parameters"
    controller.write_gradient(layer)  # weight and bias: 3 elements
    assert layer.bias.grad is not None
    assert float(layer.bias.grad[0]) == 0.5
