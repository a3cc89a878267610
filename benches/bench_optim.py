"""Drop-Muon against Muon: wall time to Muon's final accuracy, a small CNN on digits.

The workload is :mod:`benches.workloads.optim_drop_muon` (shared with
``examples/schedule_demo.py``): the same CNN, epochs, batches and seeds for
:class:`thrifty.optim.Muon` plus AdamW and for
:class:`thrifty.optim.DropMuon` (arXiv 2510.02239), which is exactly the baseline with
``s = 0`` at every step (``tests/optim/test_drop_muon.py`` checks that). The figure of
merit, in ``extra_info``, is ``seconds_to_target``: the training time until the running
mean of ``FINAL_EVALS`` test accuracies first reaches the baseline's final one, the same
mean over its last evaluations (``speedup`` = Muon's over Drop-Muon's; the paper reports up
to 1.4x).

Under ``--benchmark-disable`` (``make test``) each method trains 4 steps on 480 images and the
test checks that it learned (accuracy well above chance). Run as a script,
``python benches/bench_optim.py [SEEDS] [--first-seed S] [--sampler cost-smoothness]
[--resolution 32] [--batch B] [--epochs E] [--lr LR] [--drop-lr LR] [--tune LR ...]
[--tune-seeds S ...] [--json F] [--plot F.png]`` prints the
comparison over several seeds, Muon first on even seeds and second on odd ones, and the
median speed-up; ``--profile`` prints the cost split of one Muon step and the per-layer
costs Drop-Muon's samplers see.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

torch = pytest.importorskip("torch")

from benches.workloads import optim_drop_muon as workload  # noqa: E402
from benches.workloads.optim_drop_muon import EPOCHS, Run  # noqa: E402
from thrifty._extras import available  # noqa: E402

THREADS = 2  # the cores of the machine the README's numbers come from

_runs: dict[str, Run] = {}


@pytest.mark.parametrize("method", workload.METHODS)
def test_drop_muon_vs_muon(benchmark: Any, method: str, request: pytest.FixtureRequest) -> None:
    if not available("sklearn.datasets"):
        pytest.skip("scikit-learn (thrifty[datasets]) is needed for the digits")
    torch.set_num_threads(THREADS)
    untimed = request.config.getoption("benchmark_disable")
    epochs, limit = (2, 480) if untimed else (EPOCHS, None)
    benchmark.group = f"drop-muon vs muon, digits CNN, {epochs} epochs"
    runs: list[Run] = []
    benchmark.pedantic(
        lambda: runs.append(workload.train(method, seed=0, epochs=epochs, limit=limit)),
        rounds=1,
        iterations=1,
    )
    run = runs[-1]
    _runs[method] = run
    # 10 classes: chance is 0.1; after 4 steps both are well above it.
    assert run.final_accuracy > 0.25
    if method == "drop-muon":
        assert len(run.starts) == run.steps[-1]
        assert set(run.starts) <= set(range(5))
    info: dict[str, Any] = {
        "role": "baseline" if method == "muon" else "ours",
        "label": run.label,
        "final_accuracy": run.final_accuracy,
        "train_seconds": run.total_seconds,
    }
    baseline = _runs.get("muon")
    if method == "drop-muon" and baseline is not None:
        target = baseline.final_accuracy
        ours_s, theirs_s = run.seconds_to(target), baseline.seconds_to(target)
        info.update(target_accuracy=target, seconds_to_target=ours_s)
        if ours_s is not None and theirs_s is not None:
            info["speedup"] = theirs_s / ours_s
    benchmark.extra_info.update(info)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Drop-Muon against Muon over several seeds")
    parser.add_argument("seeds", nargs="?", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--sampler",
        default="uniform",
        help=f"Drop-Muon's start-index sampler: one of {', '.join(workload.SAMPLERS)} "
        '(estimated per seed before training), or weights by start index, e.g. "3,2,1,1,1"',
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=workload.RESOLUTION,
        help="side the 8x8 digits are upsampled to (a multiple of 8)",
    )
    parser.add_argument("--batch", type=int, default=workload.BATCH)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--lr", type=float, default=workload.LR, help="Muon's, for both")
    parser.add_argument("--drop-lr", type=float, default=None, help="Drop-Muon's, if not --lr")
    parser.add_argument(
        "--tune",
        type=float,
        nargs="+",
        default=None,
        help="lr grid: tune each method's lr on --tune-seeds (same grid and seeds for both, "
        "best mean final accuracy), then compare at the chosen lrs",
    )
    parser.add_argument("--tune-seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print the profiler's split of one Muon step (ms) and Drop-Muon's per-layer "
        "costs, then exit",
    )
    parser.add_argument("--json", type=Path, help="append each seed's result to this file")
    parser.add_argument("--plot", type=Path, help="save accuracy against seconds here")
    return parser.parse_args()


def _profile(arguments: argparse.Namespace) -> None:
    split = workload.cost_split(resolution=arguments.resolution, batch=arguments.batch)
    print({"step_ms": {part: round(ms, 1) for part, ms in split.items()}}, flush=True)
    train_x, train_y, _, _ = workload.digits(0, arguments.resolution)
    model, layers = workload.network(0, arguments.resolution)
    x, y = train_x[: arguments.batch], train_y[: arguments.batch]
    for clock in ("flops", "seconds"):
        costs, fixed = workload.backward_costs(model, layers, x, y, clock=clock)
        print({"clock": clock, "per_layer": costs, "forward": fixed}, flush=True)


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    pyplot = pytest.importorskip("matplotlib.pyplot")
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for index, result in enumerate(results):
        for method, color in (("muon", "tab:blue"), ("drop-muon", "tab:orange")):
            curve = result["curves"][method]
            label = curve["label"] if index == 0 else None
            axes.plot(curve["seconds"], curve["accuracy"], color=color, alpha=0.5, label=label)
    axes.set_xlabel("training seconds")
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0.5, 1.0)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    torch.set_num_threads(THREADS)
    arguments = _arguments()
    if arguments.profile:
        _profile(arguments)
        sys.exit(0)
    sampler: Any = arguments.sampler
    if sampler not in workload.SAMPLERS:
        sampler = [float(w) for w in sampler.split(",")]
    options = {"resolution": arguments.resolution, "batch": arguments.batch, "lr": arguments.lr}
    drop_lr = arguments.drop_lr
    if arguments.tune:
        shared = {k: v for k, v in options.items() if k != "lr"}
        tuned = {
            method: workload.tune_lr(
                method, arguments.tune, arguments.tune_seeds, arguments.epochs, sampler, **shared
            )
            for method in workload.METHODS
        }
        print({"tuning": tuned}, flush=True)
        options["lr"] = tuned["muon"]["best_lr"]
        drop_lr = tuned["drop-muon"]["best_lr"]
    speedups: list[float] = []
    cheaper: list[float] = []
    results: list[dict[str, Any]] = []
    for seed in range(arguments.first_seed, arguments.first_seed + arguments.seeds):
        result = workload.compare(seed, arguments.epochs, sampler, drop_lr=drop_lr, **options)
        results.append(result)
        print({k: v for k, v in result.items() if k != "curves"}, flush=True)
        if arguments.json is not None:
            with arguments.json.open("a") as file:
                file.write(json.dumps({**result, "options": vars(arguments)}, default=str) + "\n")
        # A run that never reaches Muon's final accuracy counts as no speed-up at all.
        speedups.append(result["speedup"] or 0.0)
        cheaper.append(result["muon_total_seconds"] / result["drop_total_seconds"])
    print(
        {
            "median_speedup": statistics.median(speedups),
            "speedups": speedups,
            "reached": sum(s > 0 for s in speedups),
            # Same epochs: how much cheaper Drop-Muon's training is, target or not.
            "median_time_per_epoch_ratio": statistics.median(cheaper),
        }
    )
    if arguments.plot is not None:
        _plot(results, arguments.plot)
