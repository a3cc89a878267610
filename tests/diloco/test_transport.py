"""The Transport protocol: both of thrifty's transports satisfy it, anything short is refused."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty import collective, diloco
from thrifty.errors import InvalidArgumentError

torch = pytest.importorskip("torch")


class _GathersOnly:
    """Scalars and state, but none of the vector collectives DiLoCo needs."""

    rank = 0
    world_size = 1

    def all_gather_scalars(self, values: Any) -> Any:
        return [list(values)]

    def sync_state(self, named_arrays: Any, revision: int | None = None) -> Any:
        return None

    def update_topology(self) -> None:
        pass


def test_thrifty_transports_are_transports() -> None:
    with (
        collective.Coordinator("127.0.0.1:0", secret="tp") as coordinator,
        collective.Communicator(coordinator.address, secret="tp", bind_host="127.0.0.1") as comm,
    ):
        assert isinstance(comm, diloco.Transport)
    for member in ("all_reduce", "all_gather", "all_gather_scalars", "pair_average", "sync_state"):
        assert callable(getattr(collective.TorchDistributed, member)), member


@pytest.mark.parametrize("transport", [object(), None, "tcp://nowhere", _GathersOnly()])
def test_diloco_and_noloco_name_a_transport_that_is_none(transport: Any) -> None:
    assert not isinstance(transport, diloco.Transport)
    model = torch.nn.Linear(2, 1)
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidArgumentError) as caught:
        diloco.DiLoCo(model, inner, transport=transport, sync_every=2)
    assert caught.value.argument == "transport"
    with pytest.raises(InvalidArgumentError) as caught:
        diloco.NoLoCo(model, inner, transport=transport, sync_every=2, outer_lr=0.7, beta=0.5)
    assert caught.value.argument == "transport"
