"""Drop-Muon: the backward pass stops at the sampled layer, frozen layers stay bit-equal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from thrifty import optim  # noqa: E402
from thrifty.errors import InvalidArgumentError, ShapeError  # noqa: E402

LAYERS = 4


def network(seed: int = 0) -> tuple[Any, list[Any]]:
    """A small CNN as ``LAYERS`` layers (conv, conv+norm, linear, head), and the model."""
    torch.manual_seed(seed)
    layers = [
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.GroupNorm(2, 4)),
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 12)),
        torch.nn.Linear(12, 3),
    ]
    model = torch.nn.Sequential(
        layers[0],
        torch.nn.ReLU(),
        layers[1],
        torch.nn.ReLU(),
        layers[2],
        torch.nn.ReLU(),
        layers[3],
    )
    return model, layers


def batch(step: int) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randn(5, 1, 6, 6, generator=generator), torch.randint(
        0, 3, (5,), generator=generator
    )


def loss_of(model: Any, step: int) -> Any:
    inputs, labels = batch(step)
    return torch.nn.functional.cross_entropy(model(inputs), labels)


def layer_nodes(loss: Any) -> int:
    """Convolution and matmul nodes in the autograd graph that ``backward`` would run."""
    seen: set[Any] = set()
    stack = [loss.grad_fn]
    count = 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = type(node).__name__
        count += name.startswith(("Convolution", "Addmm", "Mm"))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return count


@pytest.mark.parametrize("start", range(LAYERS))
def test_backward_stops_at_the_sampled_layer(start: int) -> None:
    model, layers = network()
    weights = [0.0] * LAYERS
    weights[start] = 1.0
    opt = optim.DropMuon(layers, lr=0.02, sampler=weights)
    fired = [0] * LAYERS

    def count_on_output(index: int) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if output.requires_grad:
                output.register_hook(lambda grad: fired.__setitem__(index, fired[index] + 1))

        return hook

    for index, layer in enumerate(layers):
        layer.register_forward_hook(count_on_output(index))
    assert opt.begin_step() == start
    loss = loss_of(model, 0)
    # Only the layers from ``start`` on are in the graph: one conv/matmul node each.
    assert layer_nodes(loss) == LAYERS - start
    loss.backward()
    assert fired == [0] * start + [1] * (LAYERS - start)
    for index, layer in enumerate(layers):
        for param in layer.parameters():
            assert (param.grad is None) == (index < start)
            assert not param.requires_grad if index < start else param.requires_grad
    opt.step()
    assert all(p.requires_grad for p in model.parameters())
    assert opt.start is None


def test_frozen_layers_bit_unchanged_including_momentum() -> None:
    model, layers = network(1)
    # Step 0 updates everything (creates every buffer); later steps start at layer 2.
    opt = optim.DropMuon(
        layers, lr=0.05, sampler=lambda step: [1, 0, 0, 0] if step == 0 else [0, 0, 1, 0]
    )
    snapshots = []
    for step in range(4):
        opt.begin_step()
        model.zero_grad()
        loss_of(model, step).backward()
        opt.step()
        if step == 0:
            snapshots = [
                {name: p.detach().clone() for name, p in layer.named_parameters()}
                | {
                    f"{name}.state": copy.deepcopy(opt.state[p])
                    for name, p in layer.named_parameters()
                }
                for layer in layers
            ]
    for index, layer in enumerate(layers):
        for name, param in layer.named_parameters():
            frozen = index < 2
            assert torch.equal(param, snapshots[index][name]) == frozen, (index, name)
            before, after = snapshots[index][f"{name}.state"], opt.state[param]
            for key, value in after.items():
                same = (
                    torch.equal(value, before[key])
                    if isinstance(value, torch.Tensor)
                    else value == before[key]
                )
                assert same == frozen, (index, name, key)


def reference_optimizers(model: Any, layers: list[Any]) -> tuple[Any, Any]:
    params = [p for layer in layers for p in layer.parameters()]
    muon = optim.Muon([p for p in params if p.ndim >= 2], lr=0.02, weight_decay=0.01)
    adamw = torch.optim.AdamW(
        [p for p in params if p.ndim < 2], lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0
    )
    return muon, adamw


def test_start_zero_is_muon_with_adamw() -> None:
    model, layers = network(2)
    twin, twin_layers = network(2)
    opt = optim.DropMuon(layers, lr=0.02, weight_decay=0.01, sampler=[1, 0, 0, 0])
    muon, adamw = reference_optimizers(twin, twin_layers)
    for step in range(4):
        opt.begin_step()
        model.zero_grad()
        loss_of(model, step).backward()
        opt.step()
        twin.zero_grad()
        loss_of(twin, step).backward()
        muon.step()
        adamw.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def draws(opt: Any, count: int) -> list[int]:
    starts = []
    for _ in range(count):
        starts.append(opt.begin_step())
        opt.step()
    return starts


def test_sampler_determinism_and_distributions() -> None:
    _, layers = network()
    first = draws(optim.DropMuon(layers, lr=0.02, seed=7), 400)
    assert first == draws(optim.DropMuon(layers, lr=0.02, seed=7), 400)
    assert first != draws(optim.DropMuon(layers, lr=0.02, seed=8), 400)
    counts = [first.count(s) for s in range(LAYERS)]
    assert all(60 <= c <= 140 for c in counts), counts  # 100 expected each, sd ~8.7
    weighted = draws(
        optim.DropMuon(layers, lr=0.02, sampler=torch.tensor([0.0, 3.0, 1.0, 0.0])), 200
    )
    assert set(weighted) == {1, 2}
    assert weighted.count(1) > weighted.count(2)
    seen_steps: list[int] = []

    def by_progress(step: int) -> list[float]:
        seen_steps.append(step)
        return [0, 0, 0, 1] if step < 3 else [1, 0, 0, 0]

    assert draws(optim.DropMuon(layers, lr=0.02, sampler=by_progress), 5) == [3, 3, 3, 0, 0]
    assert seen_steps == [0, 1, 2, 3, 4]


def test_state_dict_round_trip() -> None:
    model, layers = network(3)
    opt = optim.DropMuon(layers, lr=0.02, seed=5)
    for step in range(3):
        opt.begin_step()
        model.zero_grad()
        loss_of(model, step).backward()
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    twin, twin_layers = network(99)
    twin.load_state_dict(model.state_dict())
    twin_opt = optim.DropMuon(twin_layers, lr=0.5, seed=0)
    twin_opt.load_state_dict(saved)
    assert twin_opt.steps == 3
    assert twin_opt.param_groups[0]["lr"] == 0.02
    for step in range(3, 8):
        starts = []
        for m, o in ((model, opt), (twin, twin_opt)):
            starts.append(o.begin_step())
            m.zero_grad()
            loss_of(m, step).backward()
            o.step()
        assert starts[0] == starts[1]
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(InvalidArgumentError) as error:
        twin_opt.load_state_dict(optim.Muon([torch.nn.Parameter(torch.ones(2, 2))]).state_dict())
    assert error.value.argument == "state_dict"


def test_begin_step_twice_restores_before_drawing_again() -> None:
    _, layers = network()
    opt = optim.DropMuon(layers, lr=0.02, sampler=lambda step: [0, 0, 0, 1])
    opt.begin_step()
    opt.begin_step()
    opt.step()
    assert all(p.requires_grad for layer in layers for p in layer.parameters())


def test_user_frozen_parameters_stay_frozen() -> None:
    _, layers = network()
    layers[0].bias.requires_grad_(False)
    opt = optim.DropMuon(layers, lr=0.02, sampler=[0, 0, 1, 0])
    opt.begin_step()
    opt.step()
    assert not layers[0].bias.requires_grad
    assert layers[0].weight.requires_grad


@pytest.mark.parametrize(
    ("arguments", "argument", "error"),
    [
        ({"layers": []}, "layers", InvalidArgumentError),
        ({"layers": "conv"}, "layers", InvalidArgumentError),
        ({"layers": [torch.nn.ReLU()]}, "layers", InvalidArgumentError),
        ({"layers": [3]}, "layers", InvalidArgumentError),
        ({"sampler": "linear"}, "sampler", InvalidArgumentError),
        ({"sampler": [1, 1]}, "sampler", ShapeError),
        ({"sampler": [1, -1, 0, 0]}, "sampler", InvalidArgumentError),
        ({"sampler": [0, 0, 0, 0]}, "sampler", InvalidArgumentError),
        ({"sampler": [1, float("nan"), 0, 0]}, "sampler", InvalidArgumentError),
        ({"lr": 0.0}, "lr", InvalidArgumentError),
        ({"momentum": 1.5}, "momentum", InvalidArgumentError),
        ({"adamw_betas": (0.9,)}, "adamw_betas", InvalidArgumentError),
        ({"adamw_betas": (0.9, 1.0)}, "adamw_betas", InvalidArgumentError),
        ({"adamw_lr": -1}, "adamw_lr", InvalidArgumentError),
        ({"seed": -1}, "seed", InvalidArgumentError),
    ],
)
def test_bad_input_names_the_argument(
    arguments: dict[str, Any], argument: str, error: type
) -> None:
    _, layers = network()
    options: dict[str, Any] = {"layers": layers, "lr": 0.02, **arguments}
    with pytest.raises(error) as caught:
        optim.DropMuon(options.pop("layers"), **options)
    assert caught.value.argument == argument


def test_shared_parameter_and_bad_callable_rejected() -> None:
    linear = torch.nn.Linear(2, 2)
    with pytest.raises(InvalidArgumentError) as caught:
        optim.DropMuon([linear, torch.nn.Sequential(linear)], lr=0.02)
    assert caught.value.argument == "layers"
    _, layers = network()
    opt = optim.DropMuon(layers, lr=0.02, sampler=lambda step: [1.0])
    with pytest.raises(ShapeError) as caught:
        opt.begin_step()
    assert caught.value.argument == "sampler"
    assert all(p.requires_grad for layer in layers for p in layer.parameters())
