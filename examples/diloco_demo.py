"""``thrifty demo diloco``: four local workers train with DiLoCo; one is killed half way.

Four spawned worker processes on 127.0.0.1 train the workload's
:class:`~benches.workloads.diloco_language_model.TinyLM`, first as DDP (an fp32 all-reduce of the
gradients every step, the baseline), then with DiLoCo (arXiv 2311.08105; H inner steps,
then an fp32 all-reduce of the pseudo-gradients and an outer Nesterov step), both over
:class:`thrifty.collective.Communicator`. Half way through the DiLoCo run, the worker of
rank 3 SIGKILLs itself inside a sync, as a crashed machine would. The survivors' exchange
raises ``PeerLost``; they agree on a world of three, redo the exchange and train on.

The demo prints each worker's loss curve in brief, the held-out loss of DiLoCo's global
model beside DDP's, and the table of bytes against DDP (see ``benches/diloco_vs_ddp.py``),
and saves the loss curves to ``out_dir/diloco_demo.png``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benches import diloco_vs_ddp as bench
from benches.workloads.diloco_workers import RunSpec, WorkerOutput, WorkerPool
from thrifty._plot import figure, save_figure

#: The rank that is killed, and when: the first sync at or after half of the steps.
VICTIM = 3
WORLD = 4


def run(out_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """DDP, then DiLoCo with rank 3 killed half way; the curves, the table and the plot.

    Parameters
    ----------
    out_dir
        Folder for ``diloco_demo.png`` (created if missing).
    quick
        60 inner steps with H = 20 instead of 300 with H = 25.
    progress
        Show a progress bar per run.

    Returns
    -------
    dict
        ``killed`` (rank, the step whose sync it died in, the steps it finished),
        ``workers`` (one summary per worker), ``train_curves`` (each worker's training
        losses, by worker index), ``bench`` (DDP's and DiLoCo's rows in the form of
        :func:`benches.diloco_vs_ddp.run`'s result) and ``plot``.
    """
    from benches.workloads import diloco_language_model as workload

    # The Markov language: the demo is about surviving a crash, and its quick run must learn
    # in seconds.
    config, steps, sync_every, _ = bench.settings(
        steps=None, sync_every=None, quick=quick, corpus="markov"
    )
    # A held-out point at every sync: the curve shows the kill.
    eval_every = sync_every
    kill_at = steps // 2
    evaluator = bench.Evaluator(config)
    with WorkerPool(WORLD, progress=progress) as pool:
        ddp_spec = RunSpec("ddp", WORLD, steps, sync_every, eval_every, config)
        ddp_outputs = pool.run(ddp_spec, progress=progress, description="ddp x4")
        ddp = bench.summarize(ddp_spec, ddp_outputs, evaluator, ddp_bytes=None)
        ddp.bytes_vs_ddp = 1.0
        spec = RunSpec(
            "diloco",
            WORLD,
            steps,
            sync_every,
            eval_every,
            config,
            kill_rank=VICTIM,
            kill_at=kill_at,
        )
        outputs = pool.run(spec, progress=progress, description="diloco x4, rank 3 killed")
    diloco = bench.summarize(spec, outputs, evaluator, ddp_bytes=float(ddp.bytes_sent))
    workers = [_worker_summary(o) for o in outputs]
    victims = [w for w in workers if not w["finished"]]
    killed = {
        "rank": VICTIM,
        # Workers only sync at multiples of H: the victim died in the first at or after.
        "died_in_sync_at_step": math.ceil(kill_at / sync_every) * sync_every,
        "steps_finished": victims[0]["steps"] if victims else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    table = {
        "world": WORLD,
        "steps": steps,
        "sync_every": sync_every,
        "n_params": evaluator.n_params,
        "entropy_floor": workload.corpus(config).entropy_floor(config.seq_len),
        "initial_loss": evaluator.initial,
        "ddp_reference": "measured",
        "methods": {"ddp": ddp.to_dict(), "diloco": diloco.to_dict()},
    }
    result: dict[str, Any] = {
        "killed": killed,
        "workers": workers,
        "train_curves": {str(o.index): o.train_losses for o in outputs},
        "bench": table,
        "plot": None,
    }
    result["plot"] = save_figure(lambda path: save_plot(result, path), out_dir / "diloco_demo.png")
    return result


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _worker_summary(output: WorkerOutput) -> dict[str, Any]:
    losses = output.train_losses
    sizes = output.stats.get("world_sizes", [])
    return {
        "index": output.index,
        "rank_start": output.stats.get("rank_start", VICTIM if not output.finished else None),
        "finished": output.finished,
        "steps": len(losses),
        # Means of ten steps: one batch of eight sequences is a noisy loss.
        "first_loss": _mean(losses[:10]),
        "last_loss": _mean(losses[-10:]),
        "world_sizes": [list(s) for s in sizes],
        "retries": output.stats.get("retries"),
    }


def format_report(result: dict[str, Any]) -> str:
    """The story of the kill, each worker's curve in brief, held-out losses, the table."""
    table = result["bench"]
    killed = result["killed"]
    diloco, ddp = table["methods"]["diloco"], table["methods"]["ddp"]
    lines = [
        f"thrifty.diloco: {table['world']} workers, DiLoCo H={table['sync_every']} over "
        f"thrifty.collective, {table['steps']} inner steps; rank {killed['rank']} SIGKILLed "
        f"inside the sync of step {killed['died_in_sync_at_step']}",
    ]
    for worker in sorted(result["workers"], key=lambda w: w["index"]):
        first = worker["first_loss"]
        last = worker["last_loss"]
        curve = "-" if first is None else f"{first:.2f} -> {last:.2f}"
        if worker["finished"]:
            sizes = [s for _, s in worker["world_sizes"]]
            change = f"world {sizes[0]} -> {sizes[-1]}" if sizes else ""
            lines.append(
                f"  worker {worker['index']} (rank {worker['rank_start']}): "
                f"{worker['steps']} steps, train loss {curve}, {change}, "
                f"retried syncs: {worker['retries']}"
            )
        else:
            lines.append(
                f"  worker {worker['index']} (rank {worker['rank_start']}): killed after "
                f"{worker['steps']} steps, train loss {curve}"
            )
    points = "  ".join(f"{step}: {loss:.3f}" for step, loss in diloco["eval_curve"])
    lines.append(f"  held-out loss of DiLoCo's global model by step  {points}")
    points = "  ".join(f"{step}: {loss:.3f}" for step, loss in ddp["eval_curve"])
    lines.append(f"  held-out loss of DDP by step                    {points}")
    lines.append("")
    lines.append(bench.format_table(table))
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def _smooth(values: list[float], width: int = 10) -> list[float]:
    """Running mean over ``width`` steps (fewer at the start)."""
    sums = np.cumsum([0.0, *values])
    return [
        float((sums[i + 1] - sums[max(0, i + 1 - width)]) / min(width, i + 1))
        for i in range(len(values))
    ]


def save_plot(result: dict[str, Any], path: str) -> None:
    """Each worker's training loss, and the held-out loss of DiLoCo and DDP, by step."""
    table = result["bench"]
    killed = result["killed"]
    with figure(path, 1, 2, size=(12, 4.5)) as (train, held_out):
        for worker in sorted(result["workers"], key=lambda w: w["index"]):
            losses = result["train_curves"][str(worker["index"])]
            if not losses:
                continue
            label = f"worker {worker['index']} (rank {worker['rank_start']})"
            (line,) = train.plot(
                range(1, len(losses) + 1), _smooth(losses), linewidth=1.2, label=label
            )
            if not worker["finished"]:
                train.plot([len(losses)], [_smooth(losses)[-1]], "x", color=line.get_color(), ms=10)
        ddp_train = table["methods"]["ddp"]["train_loss"]
        train.plot(
            range(1, len(ddp_train) + 1),
            _smooth(ddp_train),
            "k--",
            linewidth=1,
            label="DDP (mean of the workers)",
        )
        for ax in (train, held_out):
            ax.axvline(killed["died_in_sync_at_step"], color="red", alpha=0.4, linestyle=":")
            ax.axhline(table["entropy_floor"], color="gray", linestyle=":", linewidth=1)
            ax.set_xlabel("inner step")
            ax.grid(True, alpha=0.3)
        train.set_ylabel("training loss, running mean of 10 steps")
        train.set_title(f"DiLoCo H={table['sync_every']}: rank {killed['rank']} killed (x)")
        train.legend(fontsize=8)
        for name in ("ddp", "diloco"):
            row = table["methods"][name]
            points, held = zip(*row["eval_curve"], strict=True)
            held_out.plot(points, held, marker="o", markersize=3, label=row["label"])
        held_out.set_ylabel("held-out loss (nats/token)")
        held_out.set_title("the model each run produces (DiLoCo: global)")
        held_out.legend(fontsize=8)


if __name__ == "__main__":
    from examples._script import main

    raise SystemExit(main(run, format_report, __doc__ or ""))
