"""muon_param_groups: the split follows module structure, every parameter exactly once."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from thrifty import optim  # noqa: E402
from thrifty.errors import InvalidArgumentError  # noqa: E402


class Tagger(torch.nn.Module):
    """Embedding, conv, attention-like linear layers, norms, a free parameter and a head.

    Parameter names are deliberately misleading ("head" is hidden, "hidden" is the head),
    so a name-based rule would fail.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8)
        self.head = torch.nn.Conv1d(8, 8, 3, padding=1)  # hidden, despite its name
        self.norm = torch.nn.LayerNorm(8)
        self.project = torch.nn.Linear(8, 8, bias=False)
        self.batch_norm = torch.nn.BatchNorm1d(8)
        self.scale = torch.nn.Parameter(torch.ones(8, 8))  # no known module: AdamW
        self.hidden = torch.nn.Linear(8, 20)  # the output layer

    def forward(self, tokens: Any) -> Any:
        x = self.embed(tokens).transpose(1, 2)
        x = self.batch_norm(torch.relu(self.head(x))).transpose(1, 2)
        x = self.project(self.norm(x)) @ self.scale
        return self.hidden(x)


def ids(params: list[Any]) -> set[int]:
    return {id(p) for p in params}


def flat(groups: list[dict[str, Any]]) -> list[Any]:
    return [p for group in groups for p in group["params"]]


def test_split_by_structure() -> None:
    model = Tagger()
    groups = optim.muon_param_groups(model, lr=0.03, adamw_lr=1e-3, adamw_weight_decay=0.01)
    muon, adamw = flat(groups.muon), flat(groups.adamw)
    assert ids(muon) == ids([model.head.weight, model.project.weight])
    expected_adamw = [
        model.embed.weight,
        model.head.bias,
        model.norm.weight,
        model.norm.bias,
        model.batch_norm.weight,
        model.batch_norm.bias,
        model.scale,
        model.hidden.weight,
        model.hidden.bias,
    ]
    assert ids(adamw) == ids(expected_adamw)
    assert len(muon) + len(adamw) == len(list(model.parameters()))
    assert groups.muon[0]["lr"] == 0.03
    assert groups.adamw[0]["lr"] == 1e-3
    assert groups.adamw[0]["weight_decay"] == 0.01


def test_both_optimizers_train_the_whole_model() -> None:
    torch.manual_seed(0)
    model = Tagger()
    groups = optim.muon_param_groups(model)
    muon, adamw = optim.Muon(groups.muon), torch.optim.AdamW(groups.adamw)
    before = [p.detach().clone() for p in model.parameters()]
    tokens = torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        muon.zero_grad()
        adamw.zero_grad()
        logits = model(tokens)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 20), tokens.reshape(-1)).backward()
        muon.step()
        adamw.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_tied_head_goes_to_adamw_once() -> None:
    embed = torch.nn.Embedding(10, 6)
    head = torch.nn.Linear(6, 10, bias=False)
    hidden = torch.nn.Linear(6, 6)
    model = torch.nn.Sequential(embed, hidden, torch.nn.Linear(6, 6), head)
    head.weight = embed.weight  # tied: (10, 6)
    groups = optim.muon_param_groups(model)
    adamw = flat(groups.adamw)
    assert ids(flat(groups.muon)) == ids([hidden.weight, model[2].weight])
    assert [id(p) for p in adamw].count(id(embed.weight)) == 1


def test_output_layer_override_and_frozen_left_out() -> None:
    first, second = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(first, second)
    second.bias.requires_grad_(False)
    groups = optim.muon_param_groups(model, output_layer=first)
    assert ids(flat(groups.muon)) == ids([second.weight])
    assert ids(flat(groups.adamw)) == ids([first.weight, first.bias])


def test_a_side_without_parameters_is_an_empty_list() -> None:
    groups = optim.muon_param_groups(torch.nn.Sequential(torch.nn.LayerNorm(3)))
    assert groups.muon == []
    assert len(flat(groups.adamw)) == 2


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"model": "model"}, "model"),
        ({"lr": 0.0}, "lr"),
        ({"adamw_lr": float("inf")}, "adamw_lr"),
        ({"adamw_betas": (0.9, 2.0)}, "adamw_betas"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"output_layer": torch.nn.Linear(2, 2)}, "output_layer"),
    ],
)
def test_bad_input_names_the_argument(arguments: dict[str, Any], argument: str) -> None:
    options: dict[str, Any] = {"model": Tagger(), **arguments}
    with pytest.raises(InvalidArgumentError) as caught:
        optim.muon_param_groups(options.pop("model"), **options)
    assert caught.value.argument == argument
