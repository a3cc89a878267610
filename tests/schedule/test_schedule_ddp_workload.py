"""benches.workloads.schedule_adadagrad_ddp: AdAdaGrad and fixed batches on 4 Gloo ranks.

The sampler must give every rank a batch of one size at every step, from indices no other
rank holds and no earlier step of the epoch used, while the adaptive test changes the
size; every rank must end with the same weights.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benches import adadagrad_ddp  # noqa: E402
from benches.workloads import schedule_adadagrad_ddp as workload  # noqa: E402
from benches.workloads import shaped_link  # noqa: E402
from thrifty.errors import InvalidArgumentError  # noqa: E402

WORLD = 4


def _check_batches(records: list[dict[str, Any]]) -> list[int]:
    """The global batch sizes, after checking sizes, disjointness and no reuse in an epoch."""
    steps = len(records[0]["indices"])
    seen: dict[int, set[int]] = {}  # epoch -> indices used so far
    sizes = []
    for step in range(steps):
        epochs = {record["indices"][step][0] for record in records}
        assert len(epochs) == 1, "ranks in different epochs"
        epoch = epochs.pop()
        batches = [set(record["indices"][step][1]) for record in records]
        lengths = {len(record["indices"][step][1]) for record in records}
        assert len(lengths) == 1, f"step {step}: batch sizes differ across ranks: {lengths}"
        for a, b in itertools.combinations(batches, 2):
            assert not a & b, f"step {step}: two ranks share indices {sorted(a & b)[:5]}"
        union = set().union(*batches)
        used = seen.setdefault(epoch, set())
        assert not union & used, f"step {step}: indices reused within epoch {epoch}"
        used |= union
        sizes.append(lengths.pop() * WORLD)
    assert sizes == records[0]["sizes"]
    return sizes


@pytest.mark.timeout(300)
def test_adaptive_batches_stay_equal_and_disjoint_across_ranks_while_they_grow() -> None:
    records = workload.train_ranks(
        "AdAdaGrad augmented", 0, WORLD, target=0.0, max_steps=12, record_indices=True
    )
    sizes = _check_batches(records)
    assert sizes[0] == workload.MIN_BATCH
    assert max(sizes) > sizes[0], f"the test never grew the batch: {sizes}"
    assert all(size % (WORLD * workload.MICRO_PER_RANK) == 0 for size in sizes)
    run = workload.assemble("AdAdaGrad augmented", 0, workload.BASE_LR, 0.0, records)
    assert len(run.losses) == len(run.seconds) == 12
    assert run.seconds == sorted(run.seconds)
    assert run.allreduce_bytes == 12 * 4 * (283786 + 1)
    assert run.comm_seconds is not None
    assert run.comm_seconds > 0
    summary = run.summary()
    assert (summary["reached"], summary["steps"], summary["seconds"]) == (False, None, None)


@pytest.mark.timeout(300)
def test_fixed_batches_under_ddp_stop_at_the_target_on_every_rank() -> None:
    first = workload.train_ranks("fixed batch 16", 1, WORLD, max_steps=40, record_indices=True)
    assert set(_check_batches(first)) == {16}
    run = workload.assemble("fixed batch 16", 1, workload.BASE_LR, workload.TARGET, first)
    # a target above the first held-out losses is reached as soon as there are WINDOW of
    # them to average, and every rank stops at that step
    window = workload.WINDOW
    loose = max(run.losses[:window]) + 1.0
    stopped = workload.train_ranks("fixed batch 16", 1, WORLD, target=loose, max_steps=40)
    assert [len(record["sizes"]) for record in stopped] == [window] * WORLD
    early = workload.assemble("fixed batch 16", 1, workload.BASE_LR, loose, stopped)
    assert early.summary()["steps"] == window
    assert early.losses == pytest.approx(run.losses[:window], rel=1e-6)  # seeded alike
    assert run.comm_seconds is None


def test_bad_arguments_are_named() -> None:
    with pytest.raises(InvalidArgumentError) as error:
        workload.train_ranks("fixed batch 64")
    assert error.value.argument == "solver"
    with pytest.raises(InvalidArgumentError) as error:
        workload.train_ranks("fixed batch 16", 0, 1)
    assert error.value.argument == "world"
    with pytest.raises(InvalidArgumentError) as error:
        workload.train_ranks("fixed batch 16", base_lr=0.0)
    assert error.value.argument == "base_lr"


def test_speedups_take_the_best_fixed_batch_by_median() -> None:
    rows = [
        {"solver": "fixed batch 16", "seed": 0, "seconds": 40.0},
        {"solver": "fixed batch 16", "seed": 1, "seconds": 60.0},
        {"solver": "fixed batch 256", "seed": 0, "seconds": 30.0},
        {"solver": "fixed batch 256", "seed": 1, "seconds": None},  # missed: infinitely slow
        {"solver": "AdAdaGrad norm", "seed": 0, "seconds": 20.0},
        {"solver": "AdAdaGrad norm", "seed": 1, "seconds": 30.0},
    ]
    # medians: batch 16 50 s, batch 256 infinite -> batch 16 is the best fixed batch
    result = adadagrad_ddp.speedups(rows)
    assert result["AdAdaGrad norm"] == {"per_seed": [2.0, 2.0], "median": 2.0}
    assert result["fixed batch 16"]["median"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_on_a_shaped_link_every_step_crosses_the_filter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reason = shaped_link.available()
    if reason is not None:
        pytest.skip(f"no shaped link here: {reason}")
    argv = ["--solvers", "fixed batch 256", "AdAdaGrad norm", "--seeds", "0"]
    assert adadagrad_ddp.main([*argv, "--link-rate", "20mbit", "--max-steps", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["link_rate"] == "20mbit"
    for row in result["runs"]:
        # a ring all-reduce of S bytes puts 2 (n - 1) S through the one filter
        ring = 2 * (WORLD - 1) * row["allreduce_bytes"]
        assert row["wire_bytes"] >= ring, row
        trajectory = next(t for t in result["trajectories"] if t["solver"] == row["solver"])
        burst = shaped_link.default_burst(20_000_000)
        assert trajectory["step_seconds"][-1] >= (ring - burst) * 8 / 20_000_000
