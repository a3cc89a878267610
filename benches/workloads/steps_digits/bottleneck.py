"""Bottleneck Sampling on digits: Frechet distance, network FLOPs and wall time per plan.

The flow is fully convolutional and trained at 16 x 16 and 8 x 8, so
:func:`thrifty.steps.sample_bottleneck` can run its middle stage at half resolution, where
every evaluation costs a quarter of the full-resolution FLOPs. Each plan runs at the same
NFE as full resolution with uniform Euler steps (the one-stage plan), on the same noise.

FLOPs are the network's, counted by ``torch.utils.flop_counter.FlopCounterMode`` for one
image at each resolution (a multiply-add is two FLOPs), times the evaluations each stage
makes; the resizing and re-noising between stages cost nothing comparable.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from benches.workloads.steps_digits.boss_table import evaluation_noise
from benches.workloads.steps_digits.data import SIZE
from benches.workloads.steps_digits.fid import FrechetScorer
from thrifty._extras import require
from thrifty.steps import bottleneck_plan, sample_bottleneck

#: Plans as ``(scale, fraction)`` stages: full resolution, the paper's high-low-high default,
#: a longer bottleneck, and a low-high plan that starts small.
PLANS: dict[str, tuple[tuple[float, float], ...]] = {
    "full": ((1.0, 1.0),),
    "high-low-high 0.2/0.6/0.2": ((1.0, 0.2), (0.5, 0.6), (1.0, 0.2)),
    "high-low-high 0.1/0.7/0.2": ((1.0, 0.1), (0.5, 0.7), (1.0, 0.2)),
    "low-high 0.6/0.4": ((0.5, 0.6), (1.0, 0.4)),
}


@dataclass(frozen=True)
class BottleneckRun:
    """What to measure; the defaults are the benchmark's."""

    nfes: tuple[int, ...] = (10, 20)
    fid_samples: int = 2000
    batch_size: int = 500
    seed: int = 0


def flops_per_image(velocity: Any, size: int) -> int:
    """Network FLOPs of one evaluation on one ``size`` x ``size`` image."""
    torch = require("torch")
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        velocity(torch.zeros(1, 1, size, size), torch.zeros(1))
    return int(counter.get_total_flops())


def measure(
    velocity: Any, scorer: FrechetScorer, run: BottleneckRun = BottleneckRun()
) -> dict[str, Any]:
    """Per NFE and plan: Frechet distance, network GFLOPs, seconds, and ratios to full.

    Returns ``rows`` (``"NFE=k"`` -> plan -> measurements), ``plans`` and ``settings``.
    """
    torch = require("torch")
    noise = evaluation_noise(run.fid_samples, seed=run.seed)
    cost = {scale: flops_per_image(velocity, round(SIZE * scale)) for scale in (0.5, 1.0)}
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for nfe in run.nfes:
        row: dict[str, dict[str, Any]] = {}
        for name, stages in PLANS.items():
            plan = bottleneck_plan(nfe, stages)
            started = time.perf_counter()
            images = torch.cat(
                [
                    sample_bottleneck(velocity, part, plan, seed=run.seed)
                    for part in noise.split(run.batch_size)
                ]
            )
            seconds = time.perf_counter() - started
            flops = sum(stage.steps * cost[stage.scale] for stage in plan.stages) * run.fid_samples
            row[name] = {
                "fid": scorer.score(images),
                "gflops": flops / 1e9,
                "seconds": seconds,
                "steps": [stage.steps for stage in plan.stages],
            }
        full = row["full"]
        for measured in row.values():
            measured["flops_saving"] = full["gflops"] / measured["gflops"]
            measured["fid_vs_full"] = measured["fid"] / full["fid"]
            measured["speedup"] = full["seconds"] / measured["seconds"]
        rows[f"NFE={nfe}"] = row
    return {
        "rows": rows,
        "plans": {name: [list(stage) for stage in stages] for name, stages in PLANS.items()},
        "flops_per_image": {str(scale): flops for scale, flops in cost.items()},
        "settings": asdict(run),
    }
