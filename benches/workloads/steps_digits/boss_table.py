"""The BOSS table on digits: Frechet distance against NFE for each way of placing the steps.

For each budget ``K`` one :func:`thrifty.steps.schedule` call (``method="auto"``) builds every
candidate on the same training noise: uniform and EDM spacings, BOSS's teacher-cost DP
(``bellman``), the student-propagated DP (``student``), each also refined, and ``auto``, the
one of all of them closest to the fine teacher on held-out noise. Each schedule then samples
the same ``fid_samples`` evaluation noises with Euler, and the samples are scored by
:class:`~.fid.FrechetScorer`. The fine teacher (``n`` uniform Euler steps) on the same noise
is the reference, and the distance between two disjoint halves of the real digits is the
metric's own noise floor.

``auto`` minimises the distance to the teacher, not the Frechet distance, so nothing forces
it to beat uniform on this metric: that is what the table checks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from benches.workloads.steps_digits.data import SIZE, digits, halves
from benches.workloads.steps_digits.fid import FrechetScorer, Gaussian, frechet_distance
from thrifty._extras import require
from thrifty.steps import Schedule, sample, schedule, time_grid

#: The columns of the table: the schedule candidates, in the order the BOSS paper lists them.
METHODS = ("uniform", "edm", "bellman", "student", "auto")
#: The budgets (Euler NFE) of the paper's table.
BUDGETS = (2, 3, 4, 6, 8, 10)


@dataclass(frozen=True)
class Settings:
    """How much work the table does; the defaults are the benchmark's."""

    budgets: tuple[int, ...] = BUDGETS
    #: Steps of the fine teacher, for the schedule search and as the reference sampler.
    n: int = 100
    #: Training noises of each schedule search (and as many validation noises).
    samples: int = 64
    #: Endpoint evaluations of each refined candidate.
    refine_budget: int = 20
    #: Generated images per Frechet distance.
    fid_samples: int = 2000
    #: Images per velocity evaluation while sampling.
    batch_size: int = 500
    seed: int = 0


def evaluation_noise(count: int, *, seed: int) -> Any:
    """``count`` full-resolution noises, apart from any schedule's training noise."""
    torch = require("torch")
    generator = torch.Generator().manual_seed(10_000 + seed)
    return torch.randn(count, 1, SIZE, SIZE, generator=generator)


def generate(velocity: Any, noise: Any, times: Any, *, batch_size: int = 500) -> Any:
    """Euler samples on ``times`` from every noise, a batch at a time."""
    torch = require("torch")
    return torch.cat([sample(velocity, part, times) for part in noise.split(batch_size)])


def noise_floor(scorer: FrechetScorer, *, seed: int = 0) -> float:
    """The distance between two disjoint random halves of the real digits."""
    images, _ = digits(size=SIZE)
    features = scorer.features(images)
    first, second = halves(len(images), seed=seed)
    return frechet_distance(Gaussian.fit(features[first]), Gaussian.fit(features[second]))


def boss_table(
    velocity: Any, scorer: FrechetScorer, settings: Settings = Settings(), *, progress: bool = True
) -> dict[str, Any]:
    """Frechet distance of every method at every budget, the teacher's, and the floor.

    Returns a JSON-ready dict: ``rows`` (``"K=k"`` -> method -> Frechet distance, plus the
    method ``auto`` chose), ``teacher_distances`` (``"K=k"`` -> method -> the mean L2 distance
    to the teacher on the search's validation noise, what ``auto`` minimises), ``schedules``
    (``"K=k"`` -> method -> times), ``teacher`` (its Frechet distance), ``floor``,
    ``settings`` and ``seconds``.
    """
    started = time.perf_counter()
    noise = evaluation_noise(settings.fid_samples, seed=settings.seed)

    def score(times: Any) -> float:
        return scorer.score(generate(velocity, noise, times, batch_size=settings.batch_size))

    teacher = score(time_grid(settings.n))
    rows: dict[str, dict[str, Any]] = {}
    schedules: dict[str, dict[str, list[float]]] = {}
    distances: dict[str, dict[str, float]] = {}
    for k in settings.budgets:
        best = search(velocity, k, settings, progress=progress)
        times = {name: best.report[name]["times"] for name in METHODS if name != "auto"}
        times["auto"] = best.times.tolist()
        rows[f"K={k}"] = {name: score(np.asarray(t)) for name, t in times.items()}
        rows[f"K={k}"]["auto_method"] = best.method
        teacher_distance = {
            name: best.report[name]["validation_error"] for name in times if name != "auto"
        }
        teacher_distance["auto"] = best.validation_error
        distances[f"K={k}"] = teacher_distance
        schedules[f"K={k}"] = times
    return {
        "rows": rows,
        "schedules": schedules,
        "teacher_distances": distances,
        "teacher": teacher,
        "floor": noise_floor(scorer, seed=settings.seed),
        "settings": asdict(settings),
        "seconds": round(time.perf_counter() - started, 1),
    }


def search(velocity: Any, k: int, settings: Settings, *, progress: bool = True) -> Schedule:
    """The ``auto`` schedule search at budget ``k``, with every candidate in its report."""
    return schedule(
        velocity,
        k,
        n=settings.n,
        samples=settings.samples,
        shape=(1, SIZE, SIZE),
        device="cpu",
        seed=settings.seed,
        refine_budget=settings.refine_budget,
        progress=progress,
    )


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The table's two claims, checked: auto never worse than uniform, and uniform K=8's
    distance reached with at most 6 steps (the smallest such ``K`` is reported)."""
    rows = result["rows"]
    never_worse = {key: row["auto"] <= row["uniform"] for key, row in rows.items()}
    reference = rows.get("K=8", {}).get("uniform")
    reached = [
        int(key[2:])
        for key, row in rows.items()
        if reference is not None and row["auto"] <= reference
    ]
    return {
        "auto_never_worse_than_uniform": all(never_worse.values()),
        "auto_not_worse_by_budget": never_worse,
        "uniform_k8_distance": reference,
        "fewest_auto_steps_to_uniform_k8": min(reached) if reached else None,
    }


def plot(result: dict[str, Any], path: Any, samples: dict[str, Any] | None = None) -> Any:
    """Frechet distance against NFE, one line per method, with the teacher and the floor;
    beside it, when given, a grid of images per named set of ``samples``."""
    from thrifty._plot import figure

    budgets = [int(key[2:]) for key in result["rows"]]
    columns = 2 if samples else 1
    with figure(path, 1, columns, size=(6.5 * columns, 4.5), dpi=110) as axes:
        ax = axes[0] if samples else axes
        if samples:
            _image_rows(axes[1], samples)
        for name in METHODS:
            ax.plot(budgets, [row[name] for row in result["rows"].values()], "o-", label=name)
        ax.axhline(
            result["teacher"],
            color="k",
            ls="--",
            lw=1,
            label=f"teacher ({result['settings']['n']} steps)",
        )
        ax.axhline(result["floor"], color="grey", ls=":", lw=1, label="real vs real (floor)")
        ax.set_xlabel("NFE (Euler steps)")
        ax.set_ylabel("Frechet distance (digits classifier features)")
        ax.set_yscale("log")
        ax.set_xticks(budgets)
        ax.set_title("digits 16x16 flow: schedules by Frechet distance")
        ax.legend(fontsize=8)
    return path


def _image_rows(ax: Any, samples: dict[str, Any], per_row: int = 10) -> None:
    """One row of images per entry of ``samples``, labelled with its name."""
    tiles = []
    for images in samples.values():
        row = images[:per_row, 0].clamp(-1, 1).numpy()
        tiles.append(
            np.concatenate(list(np.pad(row, ((0, 0), (1, 1), (1, 1)), constant_values=1.0)), axis=1)
        )
    ax.imshow(np.concatenate(tiles, axis=0), cmap="gray_r", vmin=-1, vmax=1)
    height = tiles[0].shape[0]
    ax.set_yticks([height * (i + 0.5) for i in range(len(tiles))], list(samples))
    ax.set_xticks([])
    ax.set_title("samples on the same noise")
