"""``thrifty.steps`` on images: the BOSS table, straightening and Bottleneck Sampling on digits.

The workload is :mod:`benches.workloads.steps_digits`: a fully convolutional flow trained on
scikit-learn's digits at 16 x 16 (and 8 x 8), scored by a Frechet distance on the features of
a digits classifier; both networks ship as weights. Three measurements, each on the same
2,000 evaluation noises:

1. **the BOSS table** -- Frechet distance against NFE, K = 2, 3, 4, 6, 8, 10, for uniform,
   EDM, BOSS (the teacher DP), the student DP and ``auto``, beside the 100-step teacher and
   the real data's own floor (two disjoint halves);
2. **straightening** -- fine-tuning towards the K = 4 ``auto`` knots, K = 4 distance before
   and after;
3. **Bottleneck Sampling** -- plans against full resolution at the same NFE: distance,
   network FLOPs and wall time.

Run from the repository root (about 15 minutes on two cores; ``--quick`` for a smoke run)::

    python benches/steps_images.py --out out            # Markdown tables and two plots
    python benches/steps_images.py --out out --json     # the same numbers as JSON

Examples
--------
>>> from benches import steps_images
>>> steps_images.format_boss({"rows": {"K=2": {"uniform": 9.0, "edm": 8.0, "bellman": 4.0,
...     "student": 3.0, "auto": 3.0, "auto_method": "student"}}, "teacher": 1.0, "floor": 0.5,
...     "settings": {"n": 100}}).splitlines()[2]
'| 2 | 9.000 | 8.000 | 4.000 | 3.000 | **3.000** (student) |'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benches.workloads.machine import cpu_name
from benches.workloads.steps_digits import FrechetScorer, digits, load_classifier, load_flow
from benches.workloads.steps_digits import bottleneck as bottleneck_run
from benches.workloads.steps_digits.boss_table import METHODS, Settings, boss_table, plot, search
from benches.workloads.steps_digits.straighten import Straightening, straighten


def format_boss(result: dict[str, Any]) -> str:
    """The BOSS table in Markdown: one row per K, the best schedule's distance in bold."""
    lines = ["| K | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
    for key, row in result["rows"].items():
        best = min(row[name] for name in METHODS)
        cells = []
        for name in METHODS:
            cell = f"{row[name]:.3f}"
            if row[name] == best:
                cell = f"**{cell}**"
            if name == "auto":
                cell += f" ({row['auto_method']})"
            cells.append(cell)
        lines.append(f"| {key[2:]} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nteacher ({result['settings']['n']} Euler steps): {result['teacher']:.3f}; "
        f"real vs real (floor): {result['floor']:.3f}"
    )
    return "\n".join(lines)


def format_bottleneck(result: dict[str, Any]) -> str:
    """Bottleneck plans against full resolution, in Markdown."""
    lines = [
        "| NFE | plan | steps per stage | Frechet | vs full | GFLOPs | FLOPs saved | seconds "
        "| speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in result["rows"].items():
        for name, m in row.items():
            lines.append(
                f"| {key[4:]} | {name} | {'/'.join(map(str, m['steps']))} | {m['fid']:.3f} "
                f"| {m['fid_vs_full']:.3f}x | {m['gflops']:.1f} | {m['flops_saving']:.2f}x "
                f"| {m['seconds']:.2f} | {m['speedup']:.2f}x |"
            )
    return "\n".join(lines)


def run(*, out_dir: Path, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """All three measurements; plots go to ``out_dir``."""
    torch = __import__("torch")
    started = time.perf_counter()
    flow, scorer = load_flow(), FrechetScorer(load_classifier(), digits()[0])
    settings = Settings()
    straightening = Straightening()
    bottleneck = bottleneck_run.BottleneckRun()
    if quick:
        settings = replace(
            settings, budgets=(2, 4), n=20, samples=16, refine_budget=4, fid_samples=300
        )
        straightening = replace(straightening, pairs_samples=128, epochs=1, fid_samples=300)
        bottleneck = replace(bottleneck, nfes=(10,), fid_samples=300)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = boss_table(flow, scorer, settings, progress=progress)
    plot(table, out_dir / "steps_images_boss.png")
    knots = search(flow, 4, replace(settings, budgets=(4,)), progress=progress)
    straightened = straighten(flow, scorer, knots, straightening, progress=progress)
    bottlenecks = bottleneck_run.measure(flow, scorer, bottleneck)
    return {
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "boss": table,
        "straightening": straightened,
        "bottleneck": bottlenecks,
        "plot": str(out_dir / "steps_images_boss.png"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_report(result: dict[str, Any]) -> str:
    s = result["straightening"]
    return "\n\n".join(
        [
            f"CPU: {result['cpu']}, torch threads {result['torch_threads']}",
            format_boss(result["boss"]),
            f"straightening towards the K={s['k']} knots {[round(t, 3) for t in s['times']]}: "
            f"Frechet {s['before']:.3f} -> {s['after']:.3f} "
            f"(loss {s['loss_before']:.4f} -> {s['loss_after']:.4f}, "
            f"{s['steps']} steps, {s['seconds']} s)",
            format_bottleneck(result["bottleneck"]),
            f"plot: {result['plot']}; total {result['seconds']} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the plots")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a minute")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    result = run(out_dir=Path(args.out), quick=args.quick, progress=not args.json)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
