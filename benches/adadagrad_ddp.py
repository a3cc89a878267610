"""AdAdaGrad against fixed batches under DDP with 4 workers: wall-clock to a held-out loss.

The workload is :mod:`benches.workloads.schedule_adadagrad_ddp` (a CNN on 16 x 16 digits,
AdaGrad with the square-root learning-rate rule, one gradient all-reduce a step over Gloo).
Each solver runs once per seed, in a rotated order from seed to seed. With ``--link-rate``
every run gets a fresh :class:`~benches.workloads.shaped_link.ShapedLink` of that rate (a
network namespace whose loopback goes through a tbf, shared by the 4 workers like a hub),
and the bytes that crossed its filter are reported beside the all-reduce payload.

Reported per run: optimizer steps, samples and seconds to the target held-out loss, the
final batch size, the bytes, and for the adaptive solvers the seconds inside the test's
all-reduces. The speed-up of a solver is the best fixed batch's median seconds over its
own, seed by seed and as medians.

::

    sudo .venv/bin/python benches/adadagrad_ddp.py --link-rate 100mbit --seeds 0 1 2 \\
        --json --plot adadagrad_ddp_100mbit.png

Without root or ``tc`` a ``--link-rate`` run says why and exits with status 2.

Examples
--------
>>> from benches.adadagrad_ddp import speedups
>>> rows = [{"solver": "fixed batch 256", "seed": 0, "seconds": 30.0},
...         {"solver": "fixed batch 16", "seed": 0, "seconds": 90.0},
...         {"solver": "AdAdaGrad norm", "seed": 0, "seconds": 15.0}]
>>> speedups(rows)["AdAdaGrad norm"]
{'per_seed': [2.0], 'median': 2.0}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benches.workloads import schedule_adadagrad_ddp as workload
from benches.workloads import shaped_link
from benches.workloads.machine import cpu_name
from thrifty._plot import figure

FIXED = tuple(s for s in workload.SOLVERS if s.startswith("fixed"))


def run_one(solver: str, seed: int, args: argparse.Namespace) -> workload.Trajectory:
    """One solver and seed, inside a fresh shaped link when ``args.link_rate`` is set."""
    call = (solver, seed, workload.WORLD, args.base_lr, args.target, args.max_steps)
    if args.link_rate is None:
        records = workload.train_ranks(*call)
        wire = None
    else:
        with shaped_link.ShapedLink(args.link_rate) as link:
            records = link.call(workload.train_ranks, *call, timeout=3600)
            wire = link.qdisc_stats().bytes
    run = workload.assemble(solver, seed, args.base_lr, args.target, records)
    run.wire_bytes = wire
    return run


def speedups(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per solver: the best fixed batch's seconds over its own, per seed, and their median.

    The best fixed batch is the one with the smaller median seconds to the target over the
    seeds (a missed target counts as infinitely slow).
    """
    seconds: dict[str, dict[int, float]] = {}
    for row in rows:
        value = row["seconds"]
        seconds.setdefault(row["solver"], {})[row["seed"]] = (
            float("inf") if value is None else float(value)
        )
    fixed = [s for s in seconds if s.startswith("fixed")]
    if not fixed:
        return {}
    best = min(fixed, key=lambda s: statistics.median(seconds[s].values()))
    result: dict[str, dict[str, Any]] = {}
    for solver, by_seed in seconds.items():
        ratios = [
            seconds[best][seed] / mine
            for seed, mine in sorted(by_seed.items())
            if seed in seconds[best] and mine > 0
        ]
        result[solver] = {
            "per_seed": [round(r, 3) for r in ratios],
            "median": round(statistics.median(ratios), 3) if ratios else None,
        }
    return result


def format_table(result: dict[str, Any]) -> str:
    """The runs and the speed-ups, in Markdown."""
    lines = [
        f"CPU: {result['cpu']}; world {result['world']}; link {result['link_rate'] or 'unshaped'};"
        f" target held-out loss {result['target']}; base lr {result['base_lr']}",
        "",
        "| solver | seed | steps | samples | seconds | final batch | all-reduce MB | "
        "wire MB | test s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["runs"]:
        wire = "" if row["wire_bytes"] is None else f"{row['wire_bytes'] / 1e6:.1f}"
        comm = "" if row["comm_seconds"] is None else f"{row['comm_seconds']:.1f}"
        seconds = "missed" if row["seconds"] is None else f"{row['seconds']:.1f}"
        lines.append(
            f"| {row['solver']} | {row['seed']} | {row['steps'] or '-'} | {row['samples'] or '-'} "
            f"| {seconds} | {row['final_batch']} | {row['allreduce_bytes'] / 1e6:.1f} | {wire} "
            f"| {comm} |"
        )
    lines += [
        "",
        "| solver | speed-up vs the best fixed batch, median | per seed |",
        "|---|---|---|",
    ]
    for solver, value in result["speedups"].items():
        lines.append(f"| {solver} | {value['median']} | {value['per_seed']} |")
    return "\n".join(lines)


def save_plot(result: dict[str, Any], path: str) -> None:
    """Held-out loss and batch size against seconds, the first seed's run of each solver."""
    seed = result["seeds"][0]
    with figure(path, 1, 2, size=(12, 4.5)) as (losses, sizes):
        for run in result["trajectories"]:
            if run["seed"] != seed:
                continue
            label = run["solver"] + (
                " (missed)" if run["seconds"] is None else f" ({run['seconds']:.0f} s)"
            )
            losses.plot(run["step_seconds"], run["losses"], label=label)
            sizes.plot(run["step_seconds"], run["batch_sizes"], label=run["solver"])
        losses.axhline(result["target"], color="black", linestyle="--", linewidth=1)
        losses.set_yscale("log")
        losses.set_ylabel("held-out loss (nats, log scale)")
        sizes.set_yscale("log", base=2)
        sizes.set_ylabel("global batch size")
        where = result["link_rate"] or "unshaped loopback"
        for ax in (losses, sizes):
            ax.set_xlabel("seconds (evaluation off the clock)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_title(f"{result['world']} workers, {where}, seed {seed}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--solvers", nargs="+", default=list(workload.SOLVERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--link-rate", default=None, help="tc rate of a shaped link (100mbit)")
    parser.add_argument("--base-lr", type=float, default=workload.BASE_LR)
    parser.add_argument("--target", type=float, default=workload.TARGET)
    parser.add_argument("--max-steps", type=int, default=workload.MAX_STEPS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--plot", default=None, help="save loss and batch size against seconds")
    args = parser.parse_args(argv)
    unknown = [s for s in args.solvers if s not in workload.SOLVERS]
    if unknown:
        parser.error(f"unknown solver {unknown[0]!r}; choose from {workload.SOLVERS}")
    if args.link_rate is not None:
        reason = shaped_link.available()
        if reason is not None:
            print(f"cannot shape a link here: {reason}", file=sys.stderr)
            return 2
    trajectories = []
    for index, seed in enumerate(args.seeds):
        shift = index % len(args.solvers)
        for solver in args.solvers[shift:] + args.solvers[:shift]:
            began = time.perf_counter()
            run = run_one(solver, seed, args)
            trajectories.append(run)
            summary = run.summary()
            print(
                f"seed {seed} {solver}: steps {summary['steps']}, seconds {summary['seconds']}, "
                f"final batch {summary['final_batch']} ({time.perf_counter() - began:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    rows = [run.summary() for run in trajectories]
    result = {
        "cpu": cpu_name(),
        "world": workload.WORLD,
        "link_rate": args.link_rate,
        "target": args.target,
        "base_lr": args.base_lr,
        "seeds": args.seeds,
        "runs": rows,
        "speedups": speedups(rows),
        "trajectories": [run.to_dict() for run in trajectories],
    }
    if args.plot:
        save_plot(result, args.plot)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
