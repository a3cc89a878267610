"""``thrifty demo schedule``: the quick demo's curves, trajectories, report and plot."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from thrifty import cli

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benches.workloads import optim_drop_muon as optim_workload
from benches.workloads import schedule_adadagrad as schedule_workload
from examples import schedule_demo as demo


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("schedule_demo")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["demo", "schedule", "--quick", "--json", "--out", str(out)]) == 0
    return out, json.loads(buffer.getvalue())["schedule"]


def test_demo_schedule_is_registered() -> None:
    # `thrifty demo` with no core runs every entry of this table.
    assert "schedule" in cli.DEMOS


def test_optimizer_curves_cover_the_same_steps(quick_demo: tuple[Path, dict[str, Any]]) -> None:
    opt = quick_demo[1]["optim"]
    assert opt["epochs"] == demo.QUICK_EPOCHS
    # 1,347 training images: ceil(1347 / BATCH) batches an epoch, the last one short.
    steps = demo.QUICK_EPOCHS * math.ceil(1347 / optim_workload.BATCH)
    every = optim_workload.EVAL_EVERY
    points = steps // every + (1 if steps % every else 0)  # and one at the end
    for key in ("muon", "drop_muon"):
        run = opt[key]
        for curve in ("seconds", "steps", "loss", "accuracy"):
            assert len(run[curve]) == points, (key, curve)
        assert run["steps"][-1] == steps
        assert run["seconds"] == sorted(run["seconds"])
        assert all(0.0 <= a <= 1.0 for a in run["accuracy"])
        # Both learned: 10 classes, chance is 0.1.
        assert run["final_accuracy"] > 0.5
        assert run["total_seconds"] == run["seconds"][-1]
        assert run["layers"] == 5
    muon, drop = opt["muon"], opt["drop_muon"]
    assert muon["start_counts"] == []
    assert muon["mean_layers_trained"] == 5.0
    assert sum(drop["start_counts"]) == steps
    assert len(drop["start_counts"]) == 5
    assert 1.0 <= drop["mean_layers_trained"] < 5.0


def test_time_to_target_is_taken_against_muons_final_accuracy(
    quick_demo: tuple[Path, dict[str, Any]],
) -> None:
    opt = quick_demo[1]["optim"]
    muon, drop = opt["muon"], opt["drop_muon"]
    tail = muon["accuracy"][-optim_workload.FINAL_EVALS :]
    assert opt["target_accuracy"] == pytest.approx(sum(tail) / len(tail))
    for run, seconds in (
        (muon, opt["muon_seconds_to_target"]),
        (drop, opt["drop_seconds_to_target"]),
    ):
        window = optim_workload.FINAL_EVALS
        accuracy = run["accuracy"]
        first = next(
            (
                run["seconds"][last - 1]
                for last in range(window, len(accuracy) + 1)
                if sum(accuracy[last - window : last]) / window >= opt["target_accuracy"]
            ),
            None,
        )
        assert seconds == first
    if opt["speedup"] is None:
        assert None in (opt["muon_seconds_to_target"], opt["drop_seconds_to_target"])
    else:
        assert opt["speedup"] == pytest.approx(
            opt["muon_seconds_to_target"] / opt["drop_seconds_to_target"]
        )


def test_batch_size_trajectories(quick_demo: tuple[Path, dict[str, Any]]) -> None:
    batch = quick_demo[1]["batch_size"]
    runs = batch["runs"]
    assert list(runs) == list(schedule_workload.SOLVERS)
    for solver, run in runs.items():
        sizes = run["batch_sizes"]
        assert len(sizes) == len(run["losses"]) == len(run["seconds"]) == run["steps"], solver
        assert run["samples"] == sum(sizes)
        assert run["reached"]
        assert run["loss"] == run["losses"][-1] < batch["target"]
        assert all(loss >= batch["target"] for loss in run["losses"][:-1])
    for solver in ("AdAdaGrad norm", "AdAdaGrad augmented"):
        sizes = runs[solver]["batch_sizes"]
        assert sizes[0] == batch["min_batch"]
        assert sizes == sorted(sizes)  # never shrinks
        assert sizes[-1] <= batch["max_batch"]
        assert sizes[-1] > sizes[0]
        assert all(size % schedule_workload.MICRO_BATCHES == 0 for size in sizes)
    # Larger batches cut the optimizer steps of the small fixed batch.
    assert runs["AdAdaGrad norm"]["steps"] < runs["fixed batch 16"]["steps"]
    # A fixed run keeps its size but for the short last batch of an epoch.
    assert max(runs["fixed batch 256"]["batch_sizes"]) == 256


def test_report_and_plot(quick_demo: tuple[Path, dict[str, Any]]) -> None:
    out, result = quick_demo
    assert Path(result["plot"]) == out / "schedule_demo.png"
    assert (out / "schedule_demo.png").stat().st_size > 1000
    report = demo.format_report(result)
    for name in ("Muon + AdamW", "Drop-Muon (uniform)", *schedule_workload.SOLVERS):
        assert name in report
    assert f"target: Muon's final test accuracy {result['optim']['target_accuracy']:.3f}" in report
    assert "16 -> 1024 by step" in report
    assert "256 fixed (shorter at epoch ends)" in report
    assert f"plot: {out / 'schedule_demo.png'}" in report


def test_demo_schedule_rejects_an_out_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "taken"
    file.write_text("")
    assert cli.main(["demo", "schedule", "--quick", "--json", "--out", str(file)]) == 2
    error = capsys.readouterr().err
    assert "out_dir (--out) must be a folder" in error
    assert str(file) in error
