"""``thrifty demo schedule``: Drop-Muon against Muon, then AdAdaGrad's batch sizes.

Two stories, both on scikit-learn's digits on the CPU, both seeded:

* **Drop-Muon against Muon.** :mod:`benches.workloads.optim_drop_muon`: a small CNN trained by Muon
  plus AdamW and by :class:`~thrifty.optim.DropMuon` (arXiv 2510.02239) for the same
  epochs, batches and seed. The report gives each method's final test accuracy, training
  seconds, seconds to reach Muon's final accuracy and the ratio of those times, and how
  many of the layers Drop-Muon trained per step.
* **AdAdaGrad's batch sizes.** :mod:`benches.workloads.schedule_adadagrad`: logistic regression by
  AdaGrad until the full-data loss falls below a target, with the batch size grown by
  :class:`~thrifty.schedule.AdaptiveBatchSize`'s norm and augmented tests (arXiv
  2402.11215) beside fixed batches of 16 and 256. The report gives the steps, samples and
  seconds to the target, and how each batch size moved.

Timings are of this machine under torch's default thread count; ``benches/README.md``,
section 7, has the measured numbers. The figure ``out_dir/schedule_demo.png`` plots test
accuracy against training seconds for both optimizers, the batch size against the step,
and the full-data loss against the step.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from thrifty._plot import figure, save_figure
from thrifty._progress import progress_bar
from thrifty.errors import InvalidArgumentError

SEED = 0
#: Epochs of Muon and Drop-Muon under ``quick``: about 1.5 s of training on one core.
QUICK_EPOCHS = 2


def run(out_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Both stories, and the plot when matplotlib is installed.

    Parameters
    ----------
    out_dir
        Folder for ``schedule_demo.png`` (created if missing).
    quick
        Muon and Drop-Muon for 2 epochs instead of 8; the batch-size runs are the same
        (they take about a second).
    progress
        A progress bar over the runs, on stderr.

    Returns
    -------
    dict
        ``optim`` (the settings, ``muon`` and ``drop_muon`` curves as in
        :meth:`benches.workloads.optim_drop_muon.Run.to_dict`, and
        :func:`benches.workloads.optim_drop_muon.summary`), ``batch_size`` (the target loss and one
        :meth:`benches.workloads.schedule_adadagrad.Trajectory.to_dict` per solver) and ``plot``.
    """
    from benches.workloads import optim_drop_muon as optim_workload
    from benches.workloads import schedule_adadagrad as schedule_workload

    out_dir = Path(out_dir)
    # Checked before minutes of training, not after them.
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(
            f"out_dir (--out) must be a folder, got the file {out_dir}", "out_dir"
        )
    epochs = QUICK_EPOCHS if quick else optim_workload.EPOCHS
    solvers = schedule_workload.SOLVERS
    runs: dict[str, Any] = {}
    with progress_bar(2 + len(solvers), "schedule demo runs", progress) as bar:
        for method in optim_workload.METHODS:
            bar.set_postfix_str(optim_workload.LABELS[method])
            runs[method] = optim_workload.train(method, seed=SEED, epochs=epochs)
            bar.update()
        trajectories = {}
        for solver in solvers:
            bar.set_postfix_str(solver)
            trajectories[solver] = schedule_workload.train(solver, seed=SEED).to_dict()
            bar.update()
    muon, drop = runs["muon"], runs["drop-muon"]
    result: dict[str, Any] = {
        "seed": SEED,
        "optim": {
            "epochs": epochs,
            "batch": optim_workload.BATCH,
            "eval_every": optim_workload.EVAL_EVERY,
            "muon": muon.to_dict(),
            "drop_muon": drop.to_dict(),
            **optim_workload.summary(muon, drop),
        },
        "batch_size": {
            "target": schedule_workload.TARGET,
            "min_batch": schedule_workload.MIN_BATCH,
            "max_batch": schedule_workload.MAX_BATCH,
            "runs": trajectories,
        },
        "plot": None,
    }
    result["plot"] = save_figure(
        lambda path: save_plot(result, path), out_dir / "schedule_demo.png"
    )
    return result


def _cell(value: float | None, spec: str, width: int) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}}"


def _trajectory(sizes: list[int]) -> str:
    """How the batch size moved: where it started, its largest and when, its mean."""
    first, largest = sizes[0], max(sizes)
    if largest == first:
        # A fixed-size run's only changes are the short last batches of its epochs.
        return f"{first} fixed" + (" (shorter at epoch ends)" if min(sizes) < first else "")
    mean = sum(sizes) / len(sizes)
    return f"{first} -> {largest} by step {sizes.index(largest) + 1}, mean {mean:.0f}"


def format_report(result: dict[str, Any]) -> str:
    """The Drop-Muon table, the batch-size table and the plot's path."""
    opt, batch = result["optim"], result["batch_size"]
    target = opt["target_accuracy"]
    lines = [
        f"thrifty.optim: Drop-Muon against Muon, digits CNN, {opt['epochs']} epochs "
        f"({opt['muon']['steps'][-1]} steps of batch {opt['batch']}), seed {result['seed']}",
        f"  target: Muon's final test accuracy {target:.3f} (the mean of its last evaluations)",
        f"  {'method':<22}{'final acc':>10}{'train s':>10}{'s to target':>13}{'ratio':>8}"
        f"{'layers/step':>13}",
    ]
    muon_s = opt["muon_seconds_to_target"]
    for key, to_target in (
        ("muon", muon_s),
        ("drop_muon", opt["drop_seconds_to_target"]),
    ):
        run = opt[key]
        ratio = None if muon_s is None or to_target is None else muon_s / to_target
        lines.append(
            f"  {run['label']:<22}{run['final_accuracy']:>10.3f}{run['total_seconds']:>10.2f}"
            f"{_cell(to_target, '.2f', 13)}{'-' if ratio is None else f'{ratio:.2f}x':>8}"
            f"{run['mean_layers_trained']:>7.1f} of {run['layers']}"
        )
    lines += [
        "  (ratio: Muon's seconds to the target over the method's; '-': target not reached)",
        f"thrifty.schedule: AdAdaGrad against fixed-batch AdaGrad, logistic regression on "
        f"digits to full-data loss {batch['target']}",
        f"  {'solver':<22}{'steps':>7}{'samples':>9}{'seconds':>9}{'reached':>9}   batch size",
    ]
    for solver, trajectory in batch["runs"].items():
        lines.append(
            f"  {solver:<22}{trajectory['steps']:>7}{trajectory['samples']:>9}"
            f"{trajectory['seconds'][-1]:>9.2f}{'yes' if trajectory['reached'] else 'no':>9}   "
            + _trajectory(trajectory["batch_sizes"])
        )
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def save_plot(result: dict[str, Any], path: str) -> None:
    """Accuracy against training seconds; batch size and full-data loss against the step."""
    opt, batch = result["optim"], result["batch_size"]
    with figure(path, 1, 3, size=(16, 4.5)) as (accuracy_ax, size_ax, loss_ax):
        for key in ("muon", "drop_muon"):
            run = opt[key]
            accuracy_ax.plot(run["seconds"], run["accuracy"], marker=".", label=run["label"])
        accuracy_ax.axhline(
            opt["target_accuracy"], color="red", linestyle=":", label="Muon's final"
        )
        accuracy_ax.set_xlabel("training seconds")
        accuracy_ax.set_ylabel("test accuracy")
        accuracy_ax.set_title("Drop-Muon against Muon, digits CNN")
        accuracy_ax.legend(fontsize=8)
        for solver, trajectory in batch["runs"].items():
            steps = range(1, len(trajectory["batch_sizes"]) + 1)
            # The running maximum: the schedule's size, without the short last batch of each
            # epoch (a fixed run's only dips; the adaptive runs drop those and never shrink).
            scheduled = np.maximum.accumulate(trajectory["batch_sizes"])
            size_ax.step(steps, scheduled, where="post", label=solver)
            loss_ax.plot(steps, trajectory["losses"], label=solver)
        size_ax.set_yscale("log", base=2)
        size_ax.set_xlabel("step")
        size_ax.set_ylabel("batch size")
        size_ax.set_title("batch size, AdAdaGrad against fixed")
        size_ax.legend(fontsize=8)
        loss_ax.axhline(batch["target"], color="red", linestyle=":", label="target")
        loss_ax.set_yscale("log")
        loss_ax.set_xlabel("step")
        loss_ax.set_ylabel("full-data loss")
        loss_ax.set_title("AdaGrad on digits, loss against step")
        loss_ax.legend(fontsize=8)


if __name__ == "__main__":
    from examples._script import main

    raise SystemExit(main(run, format_report, __doc__ or ""))
