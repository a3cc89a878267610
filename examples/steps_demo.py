"""``thrifty demo steps``: schedules for a tiny flow-matching MLP on the 8-Gaussians ring.

It trains the MLP in a few seconds (torch, CPU), then, for K = 2, 4 and 8, compares the
uniform, EDM, Bellman (BOSS), student-propagated and auto schedules by their distance to the
fine teacher on held-out noise, and saves a plot of the schedules and samples.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from thrifty._extras import available, require
from thrifty._plot import figure
from thrifty.steps import GaussianMixtureFlow, Schedule, sample, schedule

BUDGETS = (2, 4, 8)
METHODS = ("uniform", "edm", "bellman", "student", "auto")


def train_flow_mlp(
    flow: GaussianMixtureFlow, *, steps: int = 4000, seed: int = 0, hidden: int = 128
) -> Any:
    """Fit a small MLP velocity by conditional flow matching (Lipman et al., 2210.02747)."""
    torch = require("torch")
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, hidden),
        torch.nn.SiLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.SiLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.SiLU(),
        torch.nn.Linear(hidden, 2),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    schedule_lr = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        data = torch.as_tensor(flow.sample_data(512, seed=seed + step), dtype=torch.float32)
        noise = torch.as_tensor(rng.standard_normal((512, 2)), dtype=torch.float32)
        t = torch.rand(512, 1)
        x = t * data + (1 - t) * noise
        loss = ((net(torch.cat([x, t], dim=1)) - (data - noise)) ** 2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule_lr.step()
    net.eval()

    def velocity(x: Any, t: Any) -> Any:
        return net(torch.cat([x, t[:, None]], dim=1))

    return velocity


def run(*, out_dir: Path, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the demo; return the table as a dict (``--json`` prints it)."""
    torch = require("torch")
    started = time.perf_counter()
    flow = GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.15)
    velocity = train_flow_mlp(flow, steps=300 if quick else 4000)
    trained = time.perf_counter() - started
    n = 60 if quick else 100
    samples = 128 if quick else 256
    table: dict[str, dict[str, float]] = {}
    chosen: dict[int, Schedule] = {}
    for k in BUDGETS:
        best = schedule(
            velocity, k, n=n, samples=samples, shape=(2,), device="cpu", seed=0,
            progress=progress, refine_budget=20 if quick else 60,
        )  # fmt: skip
        chosen[k] = best
        table[f"K={k}"] = {
            "uniform": best.report["uniform"]["validation_error"],
            "edm": best.report["edm"]["validation_error"],
            "bellman": best.report["bellman"]["validation_error"],
            "student": best.report["student"]["validation_error"],
            "auto": best.validation_error,
            "auto_method": best.method,  # type: ignore[dict-item]
        }
    plot = _plot(flow, velocity, chosen, out_dir, torch)
    return {
        "table": table,
        "metric": "mean L2 distance to the fine teacher on held-out noise",
        "teacher_steps": n,
        "schedules": {f"K={k}": s.times.round(4).tolist() for k, s in chosen.items()},
        "plot": str(plot) if plot else None,
        "train_seconds": round(trained, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
    }


def _plot(
    flow: GaussianMixtureFlow,
    velocity: Any,
    chosen: dict[int, Schedule],
    out_dir: Path,
    torch: Any,
) -> Path | None:
    if not available("matplotlib"):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    noise = torch.as_tensor(
        np.random.default_rng(7).standard_normal((2000, 2)), dtype=torch.float32
    )
    path = out_dir / "steps_demo.png"
    size = (4 * (len(chosen) + 1), 8)
    with figure(path, 2, len(chosen) + 1, size=size, dpi=100) as axes:
        data = flow.sample_data(2000, seed=3)
        axes[0, 0].scatter(data[:, 0], data[:, 1], s=1, c="k")
        axes[0, 0].set_title("data")
        for column, (k, best) in enumerate(chosen.items(), start=1):
            for row, (name, times) in enumerate(
                [("uniform", np.linspace(0, 1, k + 1)), (best.method, best.times)]
            ):
                x = sample(velocity, noise, times).numpy()
                axes[row, column].scatter(x[:, 0], x[:, 1], s=1)
                axes[row, column].set_title(f"K={k} {name}")
                axes[row, column].set_xlim(-3.2, 3.2)
                axes[row, column].set_ylim(-3.2, 3.2)
        ax = axes[1, 0]
        for row, (k, best) in enumerate(chosen.items()):
            ax.plot(best.times, np.full(best.times.size, row), "o-", label=f"K={k} {best.method}")
        ax.set_yticks(range(len(chosen)), [f"K={k}" for k in chosen])
        ax.set_xlabel("t (0 = noise, 1 = data)")
        ax.set_title("chosen knots")
    return path


def format_report(result: dict[str, Any]) -> str:
    """The teacher distance of each method at each budget, and what auto chose."""
    lines = [f"teacher distance ({result['metric']}), teacher = {result['teacher_steps']} steps"]
    lines.append(f"{'budget':<8}" + "".join(f"{m:>10}" for m in METHODS) + "   auto chose")
    for budget, row in result["table"].items():
        cells = "".join(f"{row[m]:>10.4f}" for m in METHODS)
        lines.append(f"{budget:<8}{cells}   {row['auto_method']}")
    if result["plot"]:
        lines.append(f"plot: {result['plot']}")
    lines.append(f"trained in {result['train_seconds']} s, total {result['total_seconds']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    from examples._script import main

    raise SystemExit(main(run, format_report, __doc__ or ""))
