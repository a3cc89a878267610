"""``thrifty demo coreset``: l1 regression coresets by four samplers, then RS2 on digits.

Two stories, on seeded data:

* **l1 regression on a coherent matrix.** Heavy-tailed rows (Student t with 1.5 degrees of
  freedom, times log-normal row scales), a direction that only a few rows carry, and a
  target with Laplace noise and gross outliers: the case where uniform sampling misses the
  rows that matter. For each sample size ``m`` and each method (uniform, leverage,
  root-leverage, l1 Lewis weights), :func:`~thrifty.coreset.regression` solves the sampled
  problem; the report gives, as medians over seeds, the coreset's distortion of
  ``||[A b] z||_1`` over random directions ``z`` and the full-data cost of its solution
  against the optimum. A sample that holds none of the rows carrying the rare direction
  leaves the sampled regression without a unique solution; those are counted.
* **RS2 on digits.** :func:`~benches.workloads.coreset_rs2.time_to_accuracy`: 10 % of the data
  per epoch against full data, same epochs, same cosine schedule; training seconds to the
  target accuracy, totals and final accuracies.

The figure ``out_dir/coreset_demo.png`` plots distortion and excess cost against ``m``, and
the two RS2 accuracy curves against training seconds.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benches.workloads import coreset_rs2 as workload
from thrifty import coreset
from thrifty._plot import figure, save_figure
from thrifty._progress import progress_bar
from thrifty.coreset._embedding import Method
from thrifty.errors import InvalidArgumentError

SEED = 2023
P = 1.0
METHODS: tuple[Method, ...] = ("uniform", "leverage", "root_leverage", "lewis")
#: Random directions z over which the distortion of ``||[A b] z||_1`` is measured.
DIRECTIONS = 256


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"[coreset] {text}", file=sys.stderr, flush=True)


def coherent_problem(
    n: int, d: int, *, seed: int = SEED
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
    """``A`` (n x d) and ``b`` with heavy tails, a rare direction and outliers in ``b``."""
    rng = np.random.default_rng(seed)
    scales = rng.lognormal(0.0, 1.0, size=(n, 1))
    a = rng.standard_t(1.5, size=(n, d)) * scales
    # The last column lives on 1 row in 500: miss those rows and that coefficient is lost.
    rare = rng.random(n) < 0.002
    a[:, -1] = np.where(rare, rng.standard_normal(n) * 20.0, 0.0)
    x_true = rng.standard_normal(d)
    noise = rng.laplace(size=n)
    outliers = rng.random(n) < 0.02
    noise[outliers] *= 50.0
    return a, a @ x_true + noise


def regression_study(*, quick: bool, progress: bool) -> dict[str, Any]:
    """Distortion and excess l1 cost against ``m`` for each method (medians over seeds)."""
    n, d = (5_000, 6) if quick else (20_000, 8)
    sizes = [100, 400, 1600] if quick else [50, 100, 200, 400, 800, 1600]
    seeds = range(3 if quick else 5)
    a, b = coherent_problem(n, d)
    augmented = np.column_stack([a, b])
    x_full = coreset.lp_regression(a, b, P)
    optimum = float(np.abs(a @ x_full - b).sum())
    rng = np.random.default_rng(SEED + 1)
    directions = np.column_stack(
        [rng.standard_normal((d + 1, DIRECTIONS)), np.append(x_full, -1.0)]
    )
    _say(progress, f"l1 regression, n = {n}, d = {d}; m in {sizes}; {len(seeds)} seeds")
    distortion: dict[str, list[float]] = {method: [] for method in METHODS}
    excess: dict[str, list[float | None]] = {method: [] for method in METHODS}
    failures: dict[str, list[int]] = {method: [] for method in METHODS}
    bar = progress_bar(len(sizes) * len(METHODS), "coreset sizes x methods", progress)
    with bar:
        for m in sizes:
            for method in METHODS:
                failures[method].append(0)
                runs_distortion, runs_excess = [], []
                for seed in seeds:
                    # coreset.regression step by step, so that a sample that misses a
                    # direction altogether (rank-deficient) is counted, not fatal.
                    sample = coreset.subspace_embedding(augmented, P, m, method=method, seed=seed)
                    runs_distortion.append(sample.distortion(augmented, directions))
                    try:
                        x = coreset.lp_regression(
                            a[sample.indices], b[sample.indices], P, weights=sample.weights
                        )
                    except InvalidArgumentError:
                        runs_excess.append(math.inf)
                        failures[method][-1] += 1
                        continue
                    runs_excess.append(float(np.abs(a @ x - b).sum()) / optimum - 1.0)
                distortion[method].append(float(np.median(runs_distortion)))
                median_excess = float(np.median(runs_excess))
                excess[method].append(median_excess if math.isfinite(median_excess) else None)
                bar.update()
    return {
        "n": n,
        "d": d,
        "p": P,
        "sizes": sizes,
        "seeds": len(seeds),
        "distortion": distortion,
        "excess_cost": excess,
        "rank_deficient_samples": failures,
    }


def run(out_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Both stories, and the plot when matplotlib is installed.

    Parameters
    ----------
    out_dir
        Where ``coreset_demo.png`` goes.
    quick
        Smaller matrix, fewer sizes and seeds, and 10 RS2 epochs instead of 30.
    progress
        Progress on stderr.

    Returns
    -------
    dict
        ``regression`` (sizes, and per method the median distortion and excess cost),
        ``rs2`` (see :func:`~benches.workloads.coreset_rs2.time_to_accuracy`) and ``plot``.
    """
    result: dict[str, Any] = {"regression": regression_study(quick=quick, progress=progress)}
    epochs = 10 if quick else workload.EPOCHS
    _say(progress, f"RS2 at 10 % per epoch against full data, {epochs} epochs on digits")
    result["rs2"] = workload.time_to_accuracy(fraction=0.1, epochs=epochs)
    result["plot"] = save_figure(lambda path: save_plot(result, path), out_dir / "coreset_demo.png")
    return result


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.2f} s"


def _excess_cell(reg: dict[str, Any], method: str, row: int) -> str:
    value = reg["excess_cost"][method][row]
    failed = reg["rank_deficient_samples"][method][row]
    text = "unsolvable" if value is None else f"{value:.4f}"
    if failed:
        text += f" ({failed}/{reg['seeds']})"
    return f"{text:>14}"


def format_report(result: dict[str, Any]) -> str:
    """The distortion table, the excess-cost table and the RS2 summary."""
    reg, rs2 = result["regression"], result["rs2"]
    header = f"{'m':>6} " + " ".join(f"{method:>14}" for method in METHODS)
    lines = [
        f"thrifty.coreset: l1 regression, n = {reg['n']}, d = {reg['d']}, medians over "
        f"{reg['seeds']} seeds",
        "  distortion of ||[A b] z||_1 over random z (smaller is better)",
        "  " + header,
    ]
    for row, m in enumerate(reg["sizes"]):
        cells = " ".join(f"{reg['distortion'][method][row]:>14.3f}" for method in METHODS)
        lines.append(f"  {m:>6} {cells}")
    lines += ["  full-data cost of the coreset solution over the optimum, minus 1", "  " + header]
    for row, m in enumerate(reg["sizes"]):
        cells = " ".join(_excess_cell(reg, method, row) for method in METHODS)
        lines.append(f"  {m:>6} {cells}")
    lines.append(
        "  (k/s: k of the s samples missed a direction of A, so their regression had no "
        "unique solution)"
    )
    speedup = rs2["speedup"]
    lines += [
        f"RS2 on digits, {rs2['fraction']:.0%} of the data per epoch, {rs2['epochs']} epochs "
        f"against full data; target accuracy {rs2['target']:.3f}",
        f"  seconds to target: full {_seconds(rs2['full_seconds_to_target'])}, RS2 "
        f"{_seconds(rs2['rs2_seconds_to_target'])}"
        + ("" if speedup is None else f" ({speedup:.2f}x)"),
        f"  total training: full {rs2['total_seconds']['full']:.2f} s, RS2 "
        f"{rs2['total_seconds']['rs2']:.2f} s; final accuracy full "
        f"{rs2['final_accuracy']['full']:.3f}, RS2 {rs2['final_accuracy']['rs2']:.3f}",
    ]
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def save_plot(result: dict[str, Any], path: str) -> None:
    """Distortion and excess cost against m (log-log); RS2 accuracy against seconds."""
    reg, rs2 = result["regression"], result["rs2"]
    with figure(path, 1, 3, size=(16, 4.5)) as (dist_ax, cost_ax, rs2_ax):
        for method in METHODS:
            dist_ax.plot(reg["sizes"], reg["distortion"][method], marker="o", label=method)
            # Clipped: a coreset solution can tie the optimum, and a log axis has no zero.
            excess = [np.nan if v is None else max(v, 1e-6) for v in reg["excess_cost"][method]]
            cost_ax.plot(reg["sizes"], excess, marker="o", label=method)
        for ax, title in (
            (dist_ax, "distortion of ||[A b] z||_1"),
            (cost_ax, "excess l1 cost of the coreset solution"),
        ):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("coreset size m")
            ax.set_title(title)
            ax.legend(fontsize=8)
        for curve in (rs2["full"], rs2["rs2"]):
            rs2_ax.plot(curve["seconds"], curve["accuracy"], marker=".", label=curve["name"])
        rs2_ax.axhline(rs2["target"], color="red", linestyle=":", label="target")
        rs2_ax.set_xlabel("training seconds")
        rs2_ax.set_ylabel("test accuracy")
        rs2_ax.set_title("RS2 against full data on digits")
        rs2_ax.legend(fontsize=8)


if __name__ == "__main__":
    from examples._script import main

    raise SystemExit(main(run, format_report, __doc__ or ""))
