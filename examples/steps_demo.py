"""``thrifty demo steps``: sampling schedules for a flow-matching model on digit images.

It loads the shipped 16 x 16 digits flow and the classifier behind its Frechet distance
(:mod:`benches.workloads.steps_digits`), then, for K = 2, 4, 6 and 8 Euler steps, builds
the uniform, EDM, BOSS (teacher DP), student-DP and auto schedules with
:func:`thrifty.steps.schedule` and scores each by the Frechet distance of 1,000 samples to
the real digits, beside the 50-step teacher. It saves a plot of distance against NFE and
of samples from the uniform and auto schedules at K = 4. ``benches/steps_images.py`` runs
the full-size version (2,000 samples, K = 2..10, a 100-step teacher).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from thrifty._extras import available, require

#: The demo's settings: about a minute on two cores. ``--quick`` is a smoke run.
DEMO = {"budgets": (2, 4, 6, 8), "n": 50, "samples": 32, "refine_budget": 8, "fid_samples": 1000}
QUICK = {"budgets": (2, 4), "n": 16, "samples": 8, "refine_budget": 2, "fid_samples": 200}


def run(*, out_dir: Path, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the demo; return the table as a dict (``--json`` prints it)."""
    require("torch")
    from benches.workloads.steps_digits import FrechetScorer, digits, load_classifier, load_flow
    from benches.workloads.steps_digits.boss_table import (
        Settings,
        boss_table,
        evaluation_noise,
        generate,
        plot,
    )

    started = time.perf_counter()
    flow = load_flow()
    scorer = FrechetScorer(load_classifier(), digits()[0])
    settings = replace(Settings(), **(QUICK if quick else DEMO))  # type: ignore[arg-type]
    result = boss_table(flow, scorer, settings, progress=progress)
    path = None
    if available("matplotlib"):
        k = 4
        noise = evaluation_noise(10, seed=settings.seed)
        shown = {
            f"{name} K={k}": generate(flow, noise, np.asarray(result["schedules"][f"K={k}"][name]))
            for name in ("uniform", "auto")
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        path = plot(result, out_dir / "steps_demo.png", shown)
    return {
        "table": result["rows"],
        "teacher_distances": result["teacher_distances"],
        "metric": "Frechet distance on digits-classifier features (lower is better)",
        "teacher_steps": settings.n,
        "teacher": result["teacher"],
        "floor": result["floor"],
        "schedules": {
            key: [round(t, 4) for t in s["auto"]] for key, s in result["schedules"].items()
        },
        "plot": str(path) if path else None,
        "total_seconds": round(time.perf_counter() - started, 2),
    }


def format_report(result: dict[str, Any]) -> str:
    """The Frechet distance of each method at each budget, and what auto chose."""
    methods = ("uniform", "edm", "bellman", "student", "auto")
    lines = [f"{result['metric']}; {result['teacher_steps']}-step teacher {result['teacher']:.3f}, "
             f"real vs real {result['floor']:.3f}"]  # fmt: skip
    lines.append(f"{'budget':<8}" + "".join(f"{m:>10}" for m in methods) + "   auto chose")
    for budget, row in result["table"].items():
        cells = "".join(f"{row[m]:>10.3f}" for m in methods)
        lines.append(f"{budget:<8}{cells}   {row['auto_method']}")
    if result["plot"]:
        lines.append(f"plot: {result['plot']}")
    lines.append(f"total {result['total_seconds']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    from examples._script import main

    raise SystemExit(main(run, format_report, __doc__ or ""))
