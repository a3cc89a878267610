"""AdaptiveBatchSize under torch.distributed: two Gloo processes, each with its own (unequal)
share of the micro-batches, must get the statistics of the union in one process."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from thrifty.errors import InvalidArgumentError  # noqa: E402
from thrifty.schedule import AdaptiveBatchSize  # noqa: E402

TESTS = ("norm", "inner_product", "augmented")
R = 2  # samples per micro-batch
SHARES = ((0, 5), (5, 8))  # micro-batches of rank 0 and rank 1: unequal on purpose
STEPS = 2  # the accumulation hook needs a step to learn its direction


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    ).double()


def _data() -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(8 * R, 3, generator=generator, dtype=torch.float64)
    return inputs, torch.randint(0, 2, (8 * R,), generator=generator)


def _run(micro_batches: range) -> dict[str, list[float]]:
    """The estimates from the listed micro-batches, through both ways of feeding them, and
    the mean gradients each way writes into the model (``"mean ..."``)."""
    model = _model()
    inputs, targets = _data()
    grads = []
    for j in micro_batches:
        model.zero_grad()
        chunk = slice(j * R, (j + 1) * R)
        torch.nn.functional.cross_entropy(model(inputs[chunk]), targets[chunk]).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    results: dict[str, list[float]] = {}
    for test in TESTS:
        listed = AdaptiveBatchSize(test, min_batch=1, max_batch=10**9)
        listed.update(grads, micro_batch_size=R)
        listed.write_gradient(model)
        results[f"mean listed {test}"] = _gradient(model)
        hooked = AdaptiveBatchSize(test, min_batch=1, max_batch=10**9)
        estimates = [listed.last_estimate]
        for _ in range(STEPS):
            model.zero_grad()
            for j in micro_batches:
                chunk = slice(j * R, (j + 1) * R)
                torch.nn.functional.cross_entropy(model(inputs[chunk]), targets[chunk]).backward()
                hooked.accumulate(model, micro_batch_size=R)
            hooked.update()
            estimates.append(hooked.last_estimate)
        hooked.write_gradient(model.parameters())
        results[f"mean hooked {test}"] = _gradient(model)
        results[test] = estimates
    return results


def _gradient(model: Any) -> list[float]:
    return [float(v) for p in model.parameters() for v in p.grad.reshape(-1)]


def _run_wrapped(micro_batches: range) -> list[float]:
    """The hook under DistributedDataParallel, backward passes inside ``no_sync()``."""
    model = torch.nn.parallel.DistributedDataParallel(_model())
    inputs, targets = _data()
    hooked = AdaptiveBatchSize("augmented", min_batch=1, max_batch=10**9)
    estimates = []
    for _ in range(STEPS):
        model.zero_grad()
        with model.no_sync():
            for j in micro_batches:
                chunk = slice(j * R, (j + 1) * R)
                torch.nn.functional.cross_entropy(model(inputs[chunk]), targets[chunk]).backward()
                hooked.accumulate(model, micro_batch_size=R)
        hooked.update()
        estimates.append(hooked.last_estimate)
    return estimates


def _worker(rank: int, world: int, port: int, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results: dict[str, Any] = _run(range(*SHARES[rank]))
        results["wrapped"] = _run_wrapped(range(*SHARES[rank]))
        # one rank forgets to accumulate: both must raise, neither may hang
        controller = AdaptiveBatchSize(min_batch=1)
        if rank == 0:
            controller.accumulate(_model(), micro_batch_size=R)
        try:
            controller.update()
        except InvalidArgumentError as error:
            results["refused"] = error.argument
    finally:
        dist.destroy_process_group()
    torch.save(results, Path(directory) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_all_reduced_statistics_equal_one_process_on_the_union(tmp_path: Path) -> None:
    world = len(SHARES)
    torch.multiprocessing.spawn(
        _worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    union = _run(range(SHARES[0][0], SHARES[-1][1]))
    alone = _run(range(*SHARES[0]))
    for test in TESTS:
        # list mode, then the hook's first and second steps
        expected = union[test]
        for rank in ranks:
            got = rank[test]
            assert got[0] == pytest.approx(expected[0], rel=1e-9), test
            if test == "norm":
                assert got[1] == pytest.approx(expected[1], rel=1e-9)
            assert got[2] == pytest.approx(expected[2], rel=1e-9), test
        # the union differs from one rank's share: the all-reduce did something
        assert alone[test][0] != pytest.approx(expected[0], rel=1e-3)
        # every rank steps on the mean gradient of the union, both ways of feeding it
        for way in ("listed", "hooked"):
            for rank in ranks:
                got = rank[f"mean {way} {test}"]
                assert got == pytest.approx(union[f"mean {way} {test}"], rel=1e-9, abs=1e-12)
            assert alone[f"mean {way} {test}"] != pytest.approx(
                union[f"mean {way} {test}"], rel=1e-3
            )
    for rank in ranks:  # a DDP-wrapped model gives the same as the bare one
        assert rank["wrapped"][1] == pytest.approx(union["augmented"][2], rel=1e-9)
    assert [rank["refused"] for rank in ranks] == ["micro_batch_grads"] * world
