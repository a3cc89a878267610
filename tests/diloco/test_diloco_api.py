"""DiLoCo and NoLoCo in one process (a world of one): arguments, fragments, the schedule,
the merge, checkpoints and the background exchange."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from thrifty import collective, diloco
from thrifty.diloco._transport import MAX_RETRIES
from thrifty.diloco.compressors import EControl, TopK
from thrifty.errors import (
    CollectiveAborted,
    InvalidArgumentError,
    NonFiniteError,
    PeerLost,
    ThriftyError,
)

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def comm() -> Iterator[Any]:
    with (
        collective.Coordinator("127.0.0.1:0", secret="api") as coordinator,
        collective.Communicator(
            coordinator.address, secret="api", bind_host="127.0.0.1"
        ) as communicator,
    ):
        communicator.connect()
        communicator.update_topology()
        yield communicator


class Net(torch.nn.Module):  # type: ignore[misc]
    """Embedding, three blocks in a ModuleList, a conv (3-D weight) and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Linear(4, 8)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
        self.conv = torch.nn.Conv1d(1, 1, 3, padding=1)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x: Any) -> Any:
        h = self.embed(x)
        for block in self.blocks:
            h = torch.tanh(block(h))
        h = self.conv(h.unsqueeze(1)).squeeze(1)
        return self.head(h)


def _setup(comm: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    model = Net()
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, inner, diloco.DiLoCo(model, inner, transport=comm, **kwargs)


def _inner_step(model: Any, inner: Any, step: int) -> None:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
    inner.zero_grad()
    model(x).pow(2).mean().backward()
    inner.step()


def _flat(model: Any) -> Any:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"sync_every": 0}, "sync_every"),
        ({"sync_every": 2.5}, "sync_every"),
        ({"sync_every": 5, "outer_lr": 0.0}, "outer_lr"),
        ({"sync_every": 5, "outer_lr": float("nan")}, "outer_lr"),
        ({"sync_every": 5, "outer_momentum": 1.0}, "outer_momentum"),
        ({"sync_every": 5, "nesterov": 1}, "nesterov"),
        ({"sync_every": 5, "overlap_steps": 5}, "overlap_steps"),
        ({"sync_every": 5, "overlap_steps": -1}, "overlap_steps"),
        ({"sync_every": 5, "mix": 1.5}, "mix"),
        ({"sync_every": 5, "fragments": 0}, "fragments"),
        ({"sync_every": 5, "fragments": 7}, "fragments"),
        ({"sync_every": 5, "fragments": [["embed"], ["nothing"]]}, "fragments"),
        ({"sync_every": 5, "fragments": [["embed", "blocks"]]}, "fragments"),
        ({"sync_every": 5, "fragments": [["blocks"], ["blocks.0"]]}, "fragments"),
        ({"sync_every": 5, "fragment_pattern": "random"}, "fragment_pattern"),
        ({"sync_every": 5, "quantize": "fp3"}, "quantize"),
        ({"sync_every": 5, "error_feedback": TopK(0.1)}, "error_feedback"),
        (
            {"sync_every": 5, "quantize": "fp4", "error_feedback": EControl(TopK(0.1), 0.1)},
            "error_feedback",
        ),
    ],
)
def test_bad_arguments_name_themselves(comm: Any, kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ThriftyError) as caught:
        _setup(comm, **kwargs)
    assert caught.value.argument == argument


def test_bad_model_optimizer_and_transport(comm: Any) -> None:
    model = Net()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidArgumentError, match="model"):
        diloco.DiLoCo(object(), inner, transport=comm, sync_every=5)
    with pytest.raises(InvalidArgumentError, match="inner_optimizer"):
        diloco.DiLoCo(model, object(), transport=comm, sync_every=5)
    with pytest.raises(InvalidArgumentError) as caught:
        diloco.DiLoCo(model, inner, transport="tcp://nowhere", sync_every=5)
    assert caught.value.argument == "transport"
    with pytest.raises(InvalidArgumentError) as caught:
        diloco.NoLoCo(model, inner, transport=comm, sync_every=5, outer_lr=0.7, beta=1.0)
    assert caught.value.argument == "beta"


def test_fragments_strided_sequential_and_by_name(comm: Any) -> None:
    units = ["embed", "blocks.0", "blocks.1", "blocks.2", "conv", "head"]
    _, _, strided = _setup(comm, sync_every=6, fragments=3)
    assert [f.modules for f in strided.fragments] == [
        (units[0], units[3]),
        (units[1], units[4]),
        (units[2], units[5]),
    ]
    _, _, sequential = _setup(comm, sync_every=6, fragments=3, fragment_pattern="sequential")
    flattened = [m for f in sequential.fragments for m in f.modules]
    assert flattened == units
    assert all(f.modules for f in sequential.fragments)
    _, _, named = _setup(comm, sync_every=6, fragments=[["blocks", "embed"], ["conv", "head"]])
    assert named.fragments[0].names[:2] == ("blocks.0.weight", "blocks.0.bias")
    # Every parameter once, whatever the plan; the order is the model's, not the rank's.
    for outer in (strided, sequential, named):
        names = [n for f in outer.fragments for n in f.names]
        assert sorted(names) == sorted(n for n, _ in Net().named_parameters())


def test_streaming_schedule_staggers_fragments_and_overlaps(comm: Any) -> None:
    model, inner, outer = _setup(comm, sync_every=8, fragments=4, overlap_steps=2)
    for step in range(24):
        _inner_step(model, inner, step)
        outer.step()
    # Fragment f applies at t % 8 == 2f, launched 2 steps before (never before step 1, so
    # fragment 1's first sync is at 10), one fragment every H/F = 2 steps.
    launches = [(2, 2), (4, 3), (6, 0), (8, 1), (10, 2), (12, 3), (14, 0), (16, 1)]
    launches += [(18, 2), (20, 3), (22, 0)]
    assert [(r.step, r.fragment) for r in outer.stats.history] == launches
    assert outer.stats.syncs == 11
    assert outer.stats.bytes_sent == 0


def test_a_world_of_one_with_mix_0_restarts_from_the_outer_step(comm: Any) -> None:
    model, inner, outer = _setup(comm, sync_every=5, outer_lr=0.5, outer_momentum=0.0)
    start = _flat(model).clone()
    for step in range(5):
        _inner_step(model, inner, step)
        if step < 4:
            outer.step()
    local = _flat(model).clone()
    outer.step()
    # global <- global - lr * (global - local), and the model restarts from it
    expected = start - 0.5 * (start - local)
    assert torch.allclose(_flat(model), expected, atol=1e-6)
    glob = torch.cat([v.reshape(-1) for v in outer.global_parameters().values()])
    assert torch.equal(glob, _flat(model))


def test_overlap_carries_the_steps_made_during_the_exchange(comm: Any) -> None:
    # mix=0 with overlap must not discard the tau steps made while the exchange ran.
    model, inner, outer = _setup(comm, sync_every=6, overlap_steps=3, outer_momentum=0.0)
    start = _flat(model).clone()
    for step in range(3):
        _inner_step(model, inner, step)
        outer.step()
    at_launch = _flat(model).clone()
    for step in range(3, 6):
        _inner_step(model, inner, step)
        if step < 5:
            outer.step()
    before_apply = _flat(model).clone()
    outer.step()
    new_global = start - 0.7 * (start - at_launch)
    assert torch.allclose(_flat(model), new_global + (before_apply - at_launch), atol=1e-6)


def test_mix_keeps_part_of_the_local_model(comm: Any) -> None:
    model, inner, outer = _setup(comm, sync_every=4, mix=0.25, outer_momentum=0.0)
    start = _flat(model).clone()
    for step in range(4):
        _inner_step(model, inner, step)
        if step < 3:
            outer.step()
    local = _flat(model).clone()
    outer.step()
    new_global = start - 0.7 * (start - local)
    assert torch.allclose(_flat(model), 0.25 * local + 0.75 * new_global, atol=1e-6)


class Gate:
    """A transport whose all-reduce waits until the test opens the gate."""

    def __init__(self, comm: Any) -> None:
        self._comm = comm
        self.opened = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)

    def all_reduce(self, array: Any, **kwargs: Any) -> None:
        self.entered.set()
        if not self.opened.wait(timeout=30):
            raise TimeoutError("the gate was never opened")
        self._comm.all_reduce(array, **kwargs)


def test_the_exchange_runs_in_the_background(comm: Any) -> None:
    gate = Gate(comm)
    model, inner, outer = _setup(gate, sync_every=6, overlap_steps=4)
    for step in range(2):
        _inner_step(model, inner, step)
        outer.step()  # step 2 launches the exchange applied at step 6
    assert gate.entered.wait(timeout=10)
    for step in range(2, 5):  # inner steps go on while the all-reduce is blocked
        _inner_step(model, inner, step)
        outer.step()
    assert outer.stats.syncs == 0
    gate.opened.set()
    _inner_step(model, inner, 5)
    outer.step()
    assert outer.stats.syncs == 1


class Refusing:
    """A transport whose every all-reduce fails the same way, retried or not."""

    def __init__(self, comm: Any) -> None:
        self._comm = comm
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)

    def all_reduce(self, array: Any, **kwargs: Any) -> None:
        self.calls += 1
        raise CollectiveAborted("collectives differ: rank 0 called `all_reduce f32[7]`")


def test_giving_up_after_the_retries_says_what_kept_failing(comm: Any) -> None:
    refusing = Refusing(comm)
    model, inner, outer = _setup(refusing, sync_every=2)
    _inner_step(model, inner, 0)
    outer.step()
    _inner_step(model, inner, 1)
    with pytest.raises(PeerLost) as caught:
        outer.step()
    assert refusing.calls == 1 + MAX_RETRIES
    assert "the last failure: collectives differ" in str(caught.value)
    assert isinstance(caught.value.__cause__, CollectiveAborted)


def test_quantized_and_compressed_exchanges_take_any_shape(comm: Any) -> None:
    for options in (
        {"quantize": "fp4"},
        {"quantize": TopK(0.1)},
        {"error_feedback": EControl(TopK(0.1), 0.2)},
    ):
        model, inner, outer = _setup(comm, sync_every=3, **options)
        for step in range(6):
            _inner_step(model, inner, step)
            outer.step()
        assert outer.stats.syncs == 2
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_state_dict_round_trip_resumes_identically(comm: Any) -> None:
    def run(until: int, state: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        model, inner, outer = _setup(
            comm,
            sync_every=4,
            fragments=2,
            overlap_steps=1,
            error_feedback=EControl(TopK(0.5), 0.1),
        )
        first = 0
        if state is not None:
            model.load_state_dict(state["model"])
            inner.load_state_dict(state["inner"])
            outer.load_state_dict(state["outer"])
            first = outer.inner_steps
        for step in range(first, until):
            _inner_step(model, inner, step)
            outer.step()
        saved = {
            "model": {k: v.clone() for k, v in model.state_dict().items()},
            "inner": inner.state_dict(),
            "outer": outer.state_dict(),
        }
        return _flat(model), saved

    straight, _ = run(13, None)
    _, half = run(7, None)  # step 7: an exchange is in flight (launched 7, applied 8)
    resumed, _ = run(13, half)
    assert torch.equal(straight, resumed)
    assert half["outer"]["step"] == 7
    assert half["outer"]["ready"] == [True, False]
    _model, _inner, outer = _setup(comm, sync_every=4, fragments=3)
    with pytest.raises(InvalidArgumentError):
        outer.load_state_dict(half["outer"])


def test_noloco_alone_and_its_checkpoint(comm: Any) -> None:
    model = Net()
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    outer = diloco.NoLoCo(model, inner, transport=comm, sync_every=3, outer_lr=0.7, beta=0.5)
    for step in range(9):
        _inner_step(model, inner, step)
        outer.step()
    assert outer.stats.syncs == 3
    assert outer.inner_steps == 9
    state = outer.state_dict()
    clone = diloco.NoLoCo(Net(), inner, transport=comm, sync_every=3, outer_lr=0.7, beta=0.5)
    clone.load_state_dict(state)
    assert torch.equal(clone.state_dict()["phi"], state["phi"])
    assert clone.stats.syncs == 3


@pytest.mark.gpu
def test_a_cuda_model_trains_like_its_cpu_twin(comm: Any) -> None:
    finals = []
    for device in ("cpu", "cuda"):
        model = Net().to(device)
        inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
        outer = diloco.DiLoCo(
            model,
            inner,
            transport=comm,
            sync_every=3,
            fragments=2,
            overlap_steps=1,
            error_feedback=EControl(TopK(0.5), 0.2),
        )
        for step in range(9):
            x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step)).to(device)
            inner.zero_grad()
            model(x).pow(2).mean().backward()
            inner.step()
            outer.step()
        outer.close()
        finals.append(_flat(model).cpu())
    assert torch.allclose(finals[0], finals[1], atol=1e-4)


def test_a_refused_exchange_is_raised_once_and_close_still_stops(comm: Any) -> None:
    # A diverged model cannot be quantized: step() says so by name, and close() after it
    # neither raises the same error again nor leaves the exchange thread running. Only this
    # instance's threads count: an earlier test's unclosed instance keeps its thread until
    # the garbage collector gets to it, which depends on the machine's load.
    before = set(threading.enumerate())
    model, _, outer = _setup(comm, sync_every=1, quantize="int8")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError):
        outer.step()
    started = [t for t in threading.enumerate() if t.name.startswith("thrifty-diloco")]
    assert any(t not in before for t in started), "the exchange should run on its own thread"
    outer.close()
    left = [t for t in threading.enumerate() if t not in before]
    assert not any(t.name.startswith("thrifty-diloco") for t in left)
