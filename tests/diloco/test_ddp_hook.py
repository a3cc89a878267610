"""The compressed DDP communication hook: in one process on fake buckets, then real DDP on
two Gloo processes (replicas stay bit-identical, int8 tracks plain DDP, EControl trains)."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from thrifty.errors import InvalidArgumentError

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from thrifty.diloco._ddp_hook import CompressedHookState, ddp_comm_hook, exchange_seed  # noqa: E402
from thrifty.diloco.compressors import (  # noqa: E402 (after the torch skip)
    BlockQuantizer,
    EControl,
    ErrorFeedback,
    LGreCo,
    RandomK,
    TopK,
)

# --- one process, fake buckets ----------------------------------------------------------


class FakeBucket:
    """The part of ``dist.GradBucket`` the hook uses."""

    def __init__(self, index: int, buffer: Any, *, last: bool = True, params: Any = None) -> None:
        self._index, self._buffer, self._last = index, buffer, last
        self._params = params if params is not None else [torch.nn.Parameter(buffer.clone())]

    def index(self) -> int:
        return self._index

    def buffer(self) -> Any:
        return self._buffer

    def is_last(self) -> bool:
        return self._last

    def parameters(self) -> list[Any]:
        return list(self._params)


@pytest.fixture
def world_of_one() -> Any:
    # A group left over from another test would be a leak, not a reason to skip.
    assert not dist.is_initialized(), "a process group was left initialised in this process"
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _run(hook: Any, state: CompressedHookState, bucket: FakeBucket) -> Any:
    return hook(state, bucket).wait()


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_bucket_keeps_its_dtype_and_gets_the_compressed_values(dtype: str) -> None:
    grads = torch.randn(100, generator=torch.Generator().manual_seed(0))
    buffer = grads.to(getattr(torch, dtype))
    hook, state = ddp_comm_hook(BlockQuantizer("int8"))
    result = _run(hook, state, FakeBucket(0, buffer))
    assert result.dtype == buffer.dtype
    assert result.data_ptr() == buffer.data_ptr()  # written in place
    expected = BlockQuantizer("int8").compress(grads.to(buffer.dtype).float(), seed=0)
    assert torch.equal(buffer, expected.to(buffer.dtype))
    assert state.bytes_sent == BlockQuantizer("int8").payload_bytes(100)


@pytest.mark.usefixtures("world_of_one")
def test_seeds_follow_bucket_and_iteration() -> None:
    hook, state = ddp_comm_hook(RandomK(0.1), seed=3)
    supports = []
    for _ in range(2):
        for index in range(2):
            buffer = torch.arange(1.0, 101.0)
            _run(hook, state, FakeBucket(index, buffer, last=index == 1))
            supports.append(torch.nonzero(buffer).flatten())
    assert state.iteration == 2  # counted once per backward, at the last bucket
    assert state.bytes_sent == 4 * 40
    assert len({tuple(s.tolist()) for s in supports}) == 4
    assert exchange_seed(3, 1, 0) == exchange_seed(3, 1, 0)
    assert len({exchange_seed(3, b, i) for b in range(3) for i in range(3)}) == 9


@pytest.mark.usefixtures("world_of_one")
def test_feedback_state_is_per_bucket_and_reset_when_the_bucket_changes() -> None:
    hook, state = ddp_comm_hook(ErrorFeedback(TopK(0.1)))
    params = [torch.nn.Parameter(torch.zeros(50))]
    buffer = torch.randn(50, generator=torch.Generator().manual_seed(1))
    g = buffer.clone()
    _run(hook, state, FakeBucket(0, buffer, params=params))
    error = state.buckets[0]["error"]
    assert torch.equal(error, g - TopK(0.1).compress(g, seed=exchange_seed(0, 0, 0)))
    # the same parameters keep their state ...
    _run(hook, state, FakeBucket(0, torch.zeros(50), params=params))
    assert state.buckets[0]["error"] is error
    # ... other parameters under the same index (DDP rebuilt its buckets) get a fresh one
    _run(hook, state, FakeBucket(0, torch.zeros(50), params=[torch.nn.Parameter(g)]))
    assert state.buckets[0]["error"] is not error
    assert torch.equal(state.buckets[0]["error"], torch.zeros(50))
    _run(hook, state, FakeBucket(0, torch.ones(30), params=params))
    assert state.buckets[0]["error"].numel() == 30


class FailedWork:
    def get_future(self) -> Any:
        future = torch.futures.Future()
        future.set_exception(RuntimeError("the all-gather failed"))
        return future


@pytest.mark.usefixtures("world_of_one")
def test_a_failed_exchange_changes_neither_state_nor_bucket(monkeypatch: Any) -> None:
    hook, state = ddp_comm_hook(EControl(TopK(0.1), eta=0.1))
    params = [torch.nn.Parameter(torch.zeros(40))]
    _run(hook, state, FakeBucket(0, torch.randn(40), params=params))
    before = {key: value.clone() for key, value in state.buckets[0].items()}
    monkeypatch.setattr(dist, "all_gather_into_tensor", lambda *args, **kwargs: FailedWork())
    buffer = torch.randn(40)
    original = buffer.clone()
    with pytest.raises(RuntimeError, match="all-gather failed"):
        hook(state, FakeBucket(0, buffer, params=params)).wait()
    assert torch.equal(buffer, original)
    for key, value in state.buckets[0].items():
        assert torch.equal(value, before[key]), key


def test_bad_arguments_are_named() -> None:
    with pytest.raises(InvalidArgumentError) as wrong:
        ddp_comm_hook("topk")  # type: ignore[arg-type]
    assert wrong.value.argument == "compressor_or_feedback"
    with pytest.raises(InvalidArgumentError) as seed:
        ddp_comm_hook(TopK(0.1), seed=1.5)  # type: ignore[arg-type]
    assert seed.value.argument == "seed"


# --- real DDP on two Gloo processes ----------------------------------------------------

STEPS = 25
SCENARIOS = ("plain", "int8", "econtrol", "randomk_bf16")


def _hook_for(scenario: str) -> Any:
    return {
        "plain": None,
        "int8": BlockQuantizer("int8"),
        "econtrol": EControl(TopK(0.1), eta=0.1),
        "randomk_bf16": ErrorFeedback(RandomK(0.25)),
    }[scenario]


def _train(rank: int, scenario: str) -> dict[str, Any]:
    dtype = torch.bfloat16 if scenario.endswith("bf16") else torch.float32
    torch.manual_seed(0)  # the same initial model on both ranks
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16), torch.nn.Tanh()
    ).to(dtype)
    model.append(torch.nn.Linear(16, 1).to(dtype))
    # a small bucket cap: several buckets per step
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
    state = None
    compressor = _hook_for(scenario)
    if compressor is not None:
        hook, state = ddp_comm_hook(compressor, seed=11)
        ddp.register_comm_hook(state, hook)
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
    inputs = torch.randn(64, 8, generator=generator)
    teacher = torch.randn(8, 1, generator=torch.Generator().manual_seed(7)) / 8**0.5
    targets = inputs @ teacher
    inputs, targets = inputs.to(dtype), targets.to(dtype)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.2)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(ddp(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return {
        "params": params,
        "losses": losses,
        "bytes_sent": state.bytes_sent if state else 0,
        "iteration": state.iteration if state else 0,
        "buckets": len(state.buckets) if state else 0,
        "numel": params.numel(),
    }


def _worker(rank: int, world: int, port: int, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {scenario: _train(rank, scenario) for scenario in SCENARIOS}
    finally:
        dist.destroy_process_group()
    torch.save(results, Path(directory) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("ddp_hook")
    world = 2
    torch.multiprocessing.spawn(
        _worker, args=(world, _free_port(), str(directory)), nprocs=world, join=True
    )
    return [torch.load(directory / f"rank{r}.pt") for r in range(world)]


@pytest.mark.timeout(120)
def test_replicas_stay_bit_identical(ddp_runs: list[dict[str, Any]]) -> None:
    first, second = ddp_runs
    for scenario in SCENARIOS:
        assert torch.equal(first[scenario]["params"], second[scenario]["params"]), scenario
        assert torch.isfinite(first[scenario]["params"]).all(), scenario
    # the ranks trained on different data: equal parameters are the hook's doing
    assert first["int8"]["losses"] != second["int8"]["losses"]


@pytest.mark.timeout(120)
def test_int8_tracks_uncompressed_ddp(ddp_runs: list[dict[str, Any]]) -> None:
    run = ddp_runs[0]
    difference = (run["int8"]["params"] - run["plain"]["params"]).abs().max()
    assert difference < 5e-3
    assert run["int8"]["iteration"] == STEPS
    # about one byte a gradient plus a scale per 64: well under fp32's four
    assert run["int8"]["bytes_sent"] < 1.2 * run["int8"]["numel"] * STEPS


@pytest.mark.timeout(120)
def test_econtrol_topk_trains(ddp_runs: list[dict[str, Any]]) -> None:
    for run in ddp_runs:
        losses = run["econtrol"]["losses"]
        assert losses[-1] < 0.1 * losses[0]
        assert all(math.isfinite(loss) for loss in losses)
        assert run["econtrol"]["buckets"] >= 2  # one feedback state per bucket
        numel = run["econtrol"]["numel"]
        # 10% of the values, 8 bytes each (index and value), plus rounding up per bucket
        assert run["econtrol"]["bytes_sent"] <= STEPS * (0.8 * numel + 8 * 10)
    bf16 = ddp_runs[0]["randomk_bf16"]
    assert bf16["params"].dtype == torch.bfloat16
    assert bf16["losses"][-1] < 0.1 * bf16["losses"][0]
    assert bf16["bytes_sent"] <= STEPS * (4 * 0.25 * bf16["numel"] + 4 * 10)


# --- two Gloo processes whose LGreCo settings differ -----------------------------------------


def _misconfigured_worker(rank: int, world: int, port: int, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    outcome = "nothing raised"
    try:
        torch.manual_seed(0)
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 4))
        budget = 2.0 if rank == 1 else 1.0
        levels = [TopK(0.25), BlockQuantizer("int8")]
        hook, state = ddp_comm_hook(LGreCo(levels, default=1, budget=budget, every=1))
        ddp.register_comm_hook(state, hook)
        try:
            ddp(torch.randn(16, 8)).square().mean().backward()
        except Exception as error:  # DDP may wrap the hook's error: the message must survive
            outcome = f"{type(error).__name__}: {error}"
    finally:
        (Path(directory) / f"rank{rank}.txt").write_text(outcome)
    # Not `destroy_process_group()`: after a comm hook has raised inside DDP's backward, torch
    # sometimes aborts while tearing the Gloo group down ("terminate called without an active
    # exception", SIGABRT), which would fail the spawn after the check has its answer. The
    # outcome is written; the operating system reclaims the rest.
    os._exit(0)


@pytest.mark.timeout(120)
def test_ranks_with_different_lgreco_settings_fail_naming_them(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(
        _misconfigured_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True
    )
    for rank in range(2):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert "compressor: the workers' LGreCo settings differ" in outcome, outcome
        assert f"ranks [{1 - rank}]" in outcome, outcome
