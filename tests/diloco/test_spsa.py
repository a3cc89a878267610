"""SharedSeedSPSA: one byte per worker and step, bit-identical workers, joins and leaves."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

# tests/collective is not a package: its harness is found the way its own tests find it, on
# sys.path (spawned children inherit the parent's sys.path, so they find it too).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "collective"))

from collective_harness import World, run_peers

from thrifty.diloco import _spsa as spsa_module
from thrifty.diloco._spsa import SharedSeedSPSA
from thrifty.errors import CollectiveTimeout, InvalidArgumentError, NonFiniteError, PeerLost

torch = pytest.importorskip("torch")

DIM = 8
LR = 0.05
VOTE_EVERY = 5


# The problem every worker solves: noiseless linear regression, data seeded by (step, rank).


def _batch(step: int, rank: int) -> tuple[Any, Any]:
    target = torch.randn(DIM, 1, generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(100_003 * step + rank)
    x = torch.randn(32, DIM, generator=generator)
    return x, x @ target


def _loss(model: Any, batch: tuple[Any, Any]) -> Any:
    inputs, targets = batch
    return torch.nn.functional.mse_loss(model(inputs), targets)


def _model(shift: float = 0.0) -> Any:
    torch.manual_seed(0)
    model = torch.nn.Linear(DIM, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(shift)
    return model


def _weights(model: Any) -> list[bytes]:
    return [p.detach().numpy().tobytes() for p in model.parameters()]


# In-process: a transport of one member --------------------------------------------------------


class OneMember:
    """A world of one: what a Communicator does with no other peer, minus the sockets."""

    rank = 0
    world_size = 1

    def __init__(self, others: list[list[float]] | None = None) -> None:
        self.others = others or []  # rows appended after ours: pretend workers
        self.gathers = 0
        self.topology_updates = 0
        self.syncs: list[tuple[dict[str, Any], int]] = []
        self.fail: dict[int, BaseException] = {}  # gather call index -> error to raise

    def all_gather_scalars(self, values: list[float]) -> Any:
        call, self.gathers = self.gathers, self.gathers + 1
        if call in self.fail:
            raise self.fail[call]
        return np.asarray([values, *self.others], dtype=np.float64)

    def sync_state(self, named_arrays: dict[str, Any], revision: int | None = None) -> Any:
        # Like the real transports: None is the revision after the last one.
        if revision is None:
            revision = self.syncs[-1][1] + 1 if self.syncs else 0
        copies = {
            k: np.array(v.numpy() if isinstance(v, torch.Tensor) else v)
            for k, v in named_arrays.items()
        }
        self.syncs.append((copies, revision))
        return SimpleNamespace(revision=revision, fetched=())

    def update_topology(self) -> None:
        self.topology_updates += 1


def _run(steps: int, *, seed: int = 0, transport: Any = None, **options: Any) -> Any:
    model = _model()
    spsa = SharedSeedSPSA(
        model, _loss, transport=transport or OneMember(), lr=LR, seed=seed, **options
    )
    reports = [spsa.step(_batch(step, 0)) for step in range(steps)]
    return model, spsa, reports


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-3}, "eps"),
        ({"eps": math.nan}, "eps"),
        ({"eps": math.inf}, "eps"),
        ({"eps": "1e-3"}, "eps"),
        ({"lr": 0}, "lr"),
        ({"lr": math.inf}, "lr"),
        ({"lr": True}, "lr"),
        ({"seed": 1.5}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": True}, "seed"),
        ({"samples": 0}, "samples"),
        ({"initial_scale": 0.0}, "initial_scale"),
        ({"worker_id": -3}, "worker_id"),
        ({"transport": object()}, "transport"),
        ({"transport": None}, "transport"),
    ],
)
def test_arguments_are_checked_and_named(options: dict[str, Any], argument: str) -> None:
    kwargs: dict[str, Any] = {"transport": OneMember(), "eps": 1e-3, "lr": 0.1, "seed": 0}
    kwargs.update(options)
    with pytest.raises(InvalidArgumentError) as info:
        SharedSeedSPSA(_model(), _loss, **kwargs)
    assert info.value.argument == argument
    assert argument in str(info.value) or argument == "transport"


def test_model_and_loss_fn_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match=r"torch\.nn\.Module") as info:
        SharedSeedSPSA("model", _loss, transport=OneMember(), lr=0.1)
    assert info.value.argument == "model"
    frozen = _model().requires_grad_(False)
    with pytest.raises(InvalidArgumentError, match="requires_grad"):
        SharedSeedSPSA(frozen, _loss, transport=OneMember(), lr=0.1)
    with pytest.raises(InvalidArgumentError) as info:
        SharedSeedSPSA(_model(), "loss", transport=OneMember(), lr=0.1)
    assert info.value.argument == "loss_fn"
    spsa = SharedSeedSPSA(_model(), lambda m, b: m(b[0]), transport=OneMember(), lr=0.1)
    with pytest.raises(InvalidArgumentError, match="scalar") as info:
        spsa.step(_batch(0, 0))
    assert info.value.argument == "loss_fn"


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    first, spsa, _ = _run(30, seed=5)
    second, again, _ = _run(30, seed=5)
    third, other, _ = _run(30, seed=6)
    assert _weights(first) == _weights(second)
    assert spsa.state_hash() == again.state_hash() != other.state_hash()
    assert _weights(first) != _weights(third)


def test_one_worker_learns_with_one_byte_per_step() -> None:
    _, spsa, reports = _run(200)
    assert {r.bytes_exchanged for r in reports} == {1}
    assert {r.world_size for r in reports} == {1}
    assert [r.step for r in reports] == list(range(200))
    assert spsa.global_step == 200
    assert np.mean([r.loss for r in reports[-20:]]) < np.mean([r.loss for r in reports[:20]]) / 5


def test_samples_send_one_byte_each() -> None:
    transport = OneMember()
    _, _, reports = _run(3, transport=transport, samples=3)
    assert {r.bytes_exchanged for r in reports} == {3}


def test_quantization_round_trip() -> None:
    scale = 2.5
    step = scale / spsa_module.CODE_MAX
    for value in np.linspace(-scale, scale, 101):
        for uniform in (0.0, 0.3, 0.999):
            code = spsa_module._quantize(float(value), scale, uniform)
            assert -127 <= code <= 127
            assert abs(spsa_module._dequantize(code, scale) - value) < step + 1e-12
    # clipped beyond the scale, and the reserved code for a non-finite loss
    assert spsa_module._quantize(1e9, scale, 0.5) == 127
    assert spsa_module._quantize(-1e9, scale, 0.5) == -127
    assert spsa_module._quantize(math.nan, scale, 0.5) == spsa_module.NONFINITE_CODE
    assert spsa_module._quantize(-math.inf, scale, 0.5) == spsa_module.NONFINITE_CODE
    # stochastic rounding is unbiased inside the clip range
    uniforms = (np.arange(1000) + 0.5) / 1000
    value = 0.123456
    mean = np.mean(
        [spsa_module._dequantize(spsa_module._quantize(value, scale, u), scale) for u in uniforms]
    )
    assert abs(mean - value) < 1e-3 * step


def test_perturbation_is_plus_minus_eps_along_one_sign_vector() -> None:
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    seen: list[list[Any]] = []

    def recording_loss(m: Any, batch: Any) -> Any:
        seen.append([p.detach().clone() for p in m.parameters()])
        return _loss(m, batch)

    spsa = SharedSeedSPSA(model, recording_loss, transport=OneMember(), eps=1e-3, lr=0.1)
    spsa._evaluate(_batch(0, 0), worker_id=0)
    plus, minus = seen
    for p0, pp, pm in zip(before, plus, minus, strict=True):
        up, down = pp - p0, pm - p0
        torch.testing.assert_close(up.abs(), torch.full_like(up, 1e-3), rtol=0, atol=1e-6)
        assert torch.equal(torch.sign(up), -torch.sign(down))
    assert _weights(model) == [p.numpy().tobytes() for p in before]  # restored, bit for bit


def test_failures_leave_weights_and_counters_untouched() -> None:
    model = _model()
    transport = OneMember()
    spsa = SharedSeedSPSA(model, _loss, transport=transport, lr=LR)
    spsa.step(_batch(0, 0))
    saved, hash_before = _weights(model), spsa.state_hash()
    state = spsa.state_dict()

    transport.fail[transport.gathers] = CollectiveTimeout("the world is slow")
    with pytest.raises(CollectiveTimeout):
        spsa.step(_batch(1, 0))
    assert _weights(model) == saved
    assert spsa.state_dict() == state

    def broken(m: Any, batch: Any) -> Any:
        raise RuntimeError("out of memory")

    spsa._loss_fn = broken
    with pytest.raises(RuntimeError, match="out of memory"):
        spsa.step(_batch(1, 0))
    assert _weights(model) == saved

    spsa._loss_fn = lambda m, batch: torch.tensor(math.nan)
    with pytest.raises(NonFiniteError) as info:
        spsa.step(_batch(1, 0))
    assert info.value.argument == "batch"
    assert _weights(model) == saved
    assert spsa.state_dict() == state
    assert spsa.state_hash() == hash_before


def test_lost_peer_is_retried_with_the_same_result() -> None:
    clean, _, _ = _run(6)
    transport = OneMember()
    transport.fail[3] = PeerLost("peer 0x2a lost")
    transport.fail[4] = PeerLost("peer 0x2b lost")
    retried, _, reports = _run(6, transport=transport)
    assert _weights(retried) == _weights(clean)
    assert [r.retries for r in reports] == [0, 0, 0, 2, 0, 0]
    assert transport.topology_updates == 2


def test_every_gathered_worker_moves_the_weights_in_rank_order() -> None:
    # A pretend second worker (id 9, rank 1) sent code 100.
    pair, _, reports = _run(1, worker_id=4, transport=OneMember([[100.0, 0.0, 9.0]]))
    report = reports[0]
    assert report.world_size == 2
    ours = round(report.projected_gradient / report.scale * spsa_module.CODE_MAX)
    replayed = _model()
    replay = SharedSeedSPSA(replayed, _loss, transport=OneMember(), lr=LR, worker_id=4)
    for worker_id, code in ((4, ours), (9, 100)):  # rank order, each at lr / world_size
        if code != 0:
            gradient = spsa_module._dequantize(code, report.scale)
            with torch.no_grad():
                replay._add_direction(worker_id, 0, -LR / 2 * gradient)
    assert _weights(replayed) == _weights(pair)
    assert _weights(replayed) != _weights(_model())


def test_duplicate_worker_ids_are_refused() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        _run(1, worker_id=9, transport=OneMember([[3.0, 0.0, 9.0]]))
    assert info.value.argument == "worker_id"


def test_state_dict_round_trip_and_checks() -> None:
    _, spsa, _ = _run(5)
    state = spsa.state_dict()
    assert state["step"] == 5
    other = SharedSeedSPSA(_model(), _loss, transport=OneMember(), lr=LR)
    other.load_state_dict(state)
    assert other.state_dict() == state
    assert other.global_step == 5
    assert other.scale == spsa.scale
    for bad in ({"step": 1}, {"step": -1, "mean_square": 1.0}, {"step": 1, "mean_square": 0.0}):
        with pytest.raises(InvalidArgumentError) as info:
            other.load_state_dict(bad)
        assert info.value.argument == "state_dict"


def test_join_marks_a_fresh_worker_and_follows_the_revision() -> None:
    transport = OneMember()
    _run(2, transport=transport, worker_id=77)
    ((first, revision0),) = transport.syncs
    assert revision0 == 0
    assert first["spsa.counters"].tolist() == [0, 77]  # fresh: its own state, never a majority
    assert sorted(first) == ["param.bias", "param.weight", "spsa.counters", "spsa.mean_square"]


# Real peers over thrifty.collective ---------------------------------------------------------


def _train(comm: Any, steps: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    model = _model()
    spsa = SharedSeedSPSA(model, _loss, transport=comm, eps=1e-3, lr=LR, seed=11)
    losses, hashes, sent = [], {}, set()
    for step in range(steps):
        report = spsa.step(_batch(step, comm.rank))
        losses.append(report.loss)
        sent.add(report.bytes_exchanged)
        if step % 50 == 49:
            hashes[step] = spsa.state_hash()
    return {"losses": losses, "hashes": hashes, "sent": sent}


@pytest.mark.timeout(90)
def test_three_workers_learn_and_stay_bit_identical() -> None:
    results = run_peers(3, _train, 150)
    hashes = [r["hashes"] for r in results]
    assert len(hashes[0]) == 3
    assert hashes == [hashes[0]] * 3
    assert all(r["sent"] == {1} for r in results)
    for r in results:
        assert np.mean(r["losses"][-20:]) < np.mean(r["losses"][:20]) / 5


def _elastic(
    comm: Any, events: Any, expected: int, settle: int, newcomer: bool = False
) -> dict[str, Any]:
    """Train, voting on the topology every VOTE_EVERY steps, until the world has had
    ``expected`` members for ``settle`` steps (a condition every member sees alike)."""
    torch.set_num_threads(1)
    model = _model(shift=1.0 if newcomer else 0.0)  # a newcomer's weights must be replaced
    spsa = SharedSeedSPSA(model, _loss, transport=comm, eps=1e-3, lr=LR, seed=3)
    last_vote = -1
    joined_at = None
    if newcomer:
        comm.update_topology()  # admitted at the members' next vote
        report = spsa.join()
        joined_at, last_vote = spsa.global_step, spsa.global_step
        assert report.fetched, "the newcomer kept its own weights"
    history: list[tuple[int, int, float]] = []
    settled = 0
    deadline = time.monotonic() + 60
    while settled < settle and time.monotonic() < deadline:
        step = spsa.global_step
        if step % VOTE_EVERY == 0 and step != last_vote:
            comm.update_topology()
            last_vote = step
        report = spsa.step(_batch(step, comm.rank))
        history.append((report.step, report.world_size, report.loss))
        settled = settled + 1 if report.world_size == expected else 0
        if step == 20:
            events.put(("running", comm.rank))
        if report.world_size != expected:
            time.sleep(0.01)  # leave the CPUs to the peer that is starting or dying
    return {"history": history, "hash": spsa.state_hash(), "joined_at": joined_at}


@pytest.mark.timeout(90)
def test_newcomer_receives_the_state_and_stays_bit_identical() -> None:
    with World() as world:
        for _ in range(2):
            world.spawn(_elastic, world.events, 3, 30, world=2)
        world.event()
        world.spawn(_elastic, world.events, 3, 30, True)
        results = world.results(3)
    assert len({r.value["hash"] for r in results}) == 1
    newcomer = next(r.value for r in results if r.value["joined_at"] is not None)
    member = next(r.value for r in results if r.value["joined_at"] is None)
    joined_at = newcomer["joined_at"]
    assert joined_at > 20
    # the newcomer's steps are the members' last steps, in a world of three
    tail = member["history"][-len(newcomer["history"]) :]
    assert [h[:2] for h in tail] == [h[:2] for h in newcomer["history"]]
    assert newcomer["history"][0][0] == joined_at
    assert all(world == 3 for _, world, _ in newcomer["history"])
    # it starts from the members' trained weights, not its own fresh ones
    first_losses = [loss for _, _, loss in member["history"][:10]]
    assert newcomer["history"][0][2] < np.mean(first_losses)


@pytest.mark.timeout(90)
def test_survivors_of_a_killed_worker_go_on_learning_in_step() -> None:
    # A short heartbeat: a SIGKILLed peer is noticed sooner.
    with World(heartbeat_timeout_s=2.0) as world:
        for _ in range(3):
            world.spawn(_elastic, world.events, 2, 60, world=3)
        world.event()
        world.kill(2)
        results = world.results(2)
    assert len({r.value["hash"] for r in results}) == 1
    for r in results:
        history = r.value["history"]
        assert history[0][1] == 3
        assert history[-1][1] == 2
        assert [h[0] for h in history] == list(range(len(history)))  # no step lost or redone
        losses = [loss for _, _, loss in history]
        after_kill = [loss for _, world, loss in history if world == 2]
        assert np.mean(losses[-10:]) < np.mean(losses[:10]) / 5
        assert np.mean(after_kill[-10:]) < np.mean(after_kill[:10])


# torch.distributed (Gloo) as the transport ----------------------------------------------------


def _gloo_worker(rank: int, world_size: int, port: int, out_dir: str, steps: int) -> None:
    import torch.distributed as dist

    from thrifty.collective import TorchDistributed

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = _model(shift=float(rank))  # rank 0's weights win the first join
        spsa = SharedSeedSPSA(model, _loss, transport=TorchDistributed(), lr=LR, seed=2)
        reports = [spsa.step(_batch(step, rank)) for step in range(steps)]
        result = {
            "hash": spsa.state_hash(),
            "losses": [r.loss for r in reports],
            "sent": sorted({r.bytes_exchanged for r in reports}),
            "world": sorted({r.world_size for r in reports}),
        }
        Path(out_dir, f"{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(90)
def test_over_torch_distributed_gloo(tmp_path: Path) -> None:
    import torch.multiprocessing

    torch.multiprocessing.spawn(
        _gloo_worker, args=(2, _free_port(), str(tmp_path), 100), nprocs=2, join=True
    )
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert results[0]["hash"] == results[1]["hash"]
    for r in results:
        assert r["sent"] == [1]
        assert r["world"] == [2]
        assert np.mean(r["losses"][-10:]) < np.mean(r["losses"][:10]) / 5
