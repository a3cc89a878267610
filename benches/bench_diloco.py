"""DDP beside DiLoCo, Streaming DiLoCo (fp32, fp4), NoLoCo and SPSA, on 4 local workers.

One group: every method trains the workload's TinyLM for the same inner steps on the same
tokens with 4 spawned workers over thrifty.collective (``diloco_vs_ddp.py``, the driver of
``thrifty bench diloco``; the workers live for the whole module, each run gets a fresh
coordinator). DDP, an fp32
all-reduce of the gradients every step over the same transport, is the baseline. A round
is one whole training run; the time is the parent's (it includes connecting the four
communicators, well under a second), and ``extra_info`` holds what the method is judged
by: bytes per worker and their ratio to DDP's, the largest single sync, the slowest
worker's own wall time and the held-out loss of the model it produced.

Under ``--benchmark-disable`` (``make test``) each method runs once for 20 steps with
H = 10, which checks every path and the byte accounting; ``--benchmark-only`` runs the
workload's 300 steps with H = 25, one round each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch")

from benches import diloco_vs_ddp as bench
from benches.workloads.diloco_workers import RunSpec, WorkerOutput, WorkerPool

WORLD = 4

_state: dict[str, Any] = {}


def _settings(config: pytest.Config) -> tuple[Any, int, int, int]:
    # Untimed runs (make test) only check that every path works: keep them small.
    if config.getoption("benchmark_disable"):
        return bench.settings(steps=20, sync_every=10, quick=True)
    return bench.settings(steps=None, sync_every=None, quick=False)


@pytest.fixture(scope="module", autouse=True)
def _pool() -> Iterator[None]:
    yield
    pool = _state.pop("pool", None)
    if pool is not None:
        pool.close()
    _state.clear()


def _measure(benchmark: Any, config: pytest.Config, method: str) -> bench.MethodResult:
    workload_config, steps, sync_every, _ = _settings(config)
    if "pool" not in _state:
        _state["pool"] = WorkerPool(WORLD)
        _state["evaluator"] = bench.Evaluator(workload_config)
    pool, evaluator = _state["pool"], _state["evaluator"]
    # One held-out point, at the end: the curves are the CLI's business.
    spec = RunSpec(method, WORLD, steps, sync_every, steps, workload_config)
    outputs: list[list[WorkerOutput]] = []

    def one() -> None:
        outputs.append(pool.run(spec, progress=False))

    benchmark.group = f"diloco world={WORLD} steps={steps}"
    benchmark.pedantic(one, rounds=1, iterations=1)
    ddp = _state.get("ddp")
    # Without the DDP run (deselected), compare with what its ring all-reduce would send.
    reference = (
        float(ddp.bytes_sent)
        if ddp is not None
        else 2 * (WORLD - 1) / WORLD * 4 * evaluator.n_params * steps
    )
    row = bench.summarize(spec, outputs[-1], evaluator, ddp_bytes=reference)
    _state[method] = row
    benchmark.extra_info.update(
        {
            "role": "baseline" if method == "ddp" else "ours",
            "label": row.label,
            "bytes_sent": row.bytes_sent,
            "bytes_vs_ddp": row.bytes_vs_ddp,
            "peak_bytes_per_sync": row.peak_bytes_per_sync,
            "syncs": row.syncs,
            "wall_s": row.wall_s,
            "comm_wait_s": row.comm_wait_s,
            "eval_loss": row.eval_loss,
            "initial_loss": evaluator.initial,
        }
    )
    assert row.workers_finished == WORLD
    assert math.isfinite(row.eval_loss)
    if method != "spsa":
        # Every gradient method learns; SPSA from scratch barely moves (see the README).
        assert row.eval_loss < 0.8 * evaluator.initial, row.eval_loss
    return row


def test_ddp(benchmark: Any, pytestconfig: pytest.Config) -> None:
    row = _measure(benchmark, pytestconfig, "ddp")
    assert row.syncs == row.steps


def test_diloco(benchmark: Any, pytestconfig: pytest.Config) -> None:
    row = _measure(benchmark, pytestconfig, "diloco")
    h = row.sync_every
    assert h is not None
    assert row.syncs == row.steps // h
    # One all-reduce of the model every H steps instead of one every step.
    assert row.bytes_vs_ddp == pytest.approx(1 / h, rel=0.05)


def test_streaming_fp32(benchmark: Any, pytestconfig: pytest.Config) -> None:
    row = _measure(benchmark, pytestconfig, "streaming-fp32")
    diloco = _state.get("diloco")
    if diloco is not None:
        # Fragments cut the largest sync, not the total.
        assert row.peak_bytes_per_sync < 0.6 * diloco.peak_bytes_per_sync
        assert row.bytes_sent == pytest.approx(diloco.bytes_sent, rel=0.1)


def test_streaming_fp4(benchmark: Any, pytestconfig: pytest.Config) -> None:
    row = _measure(benchmark, pytestconfig, "streaming-fp4")
    fp32 = _state.get("streaming-fp32")
    if fp32 is not None:
        assert row.bytes_sent < fp32.bytes_sent / 5


def test_noloco(benchmark: Any, pytestconfig: pytest.Config) -> None:
    row = _measure(benchmark, pytestconfig, "noloco")
    assert row.bytes_vs_ddp is not None
    assert row.bytes_vs_ddp < 0.2


def test_spsa(benchmark: Any, pytestconfig: pytest.Config) -> None:
    row = _measure(benchmark, pytestconfig, "spsa")
    assert row.bytes_sent == 24 * row.steps
