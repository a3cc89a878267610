"""Straightening on digits: fine-tune the flow towards a K-step schedule's knots.

BOSS (arXiv 2312.16414) fine-tunes the model so that one Euler step between consecutive
knots of the chosen schedule lands where the fine teacher lands:
:func:`thrifty.steps.straightening_pairs` rolls the frozen teacher and keeps its states at
the knots, :func:`thrifty.steps.straightening_loss` is the squared error of the model's
velocity against each jump's slope. The teacher's pairs are drawn on fresh noise, apart
from the evaluation noise, and the Frechet distance at the same ``K`` is measured before
and after on the same evaluation noise.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

from benches.workloads.steps_digits.boss_table import evaluation_noise, generate
from benches.workloads.steps_digits.data import SIZE
from benches.workloads.steps_digits.fid import FrechetScorer
from thrifty._extras import require
from thrifty._progress import progress_bar
from thrifty.steps import Schedule, straightening_loss, straightening_pairs


@dataclass(frozen=True)
class Straightening:
    """A short fine-tuning run; the defaults are the benchmark's."""

    pairs_samples: int = 2048
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 2e-4
    fid_samples: int = 2000
    seed: int = 0


def straighten(
    velocity: Any,
    scorer: FrechetScorer,
    knots: Schedule,
    settings: Straightening = Straightening(),
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune a copy of ``velocity`` (a torch module) towards ``knots``; score both.

    Returns ``before`` and ``after`` (Frechet distances on ``knots.times``), the straightening
    loss before and after on the training pairs, ``steps``, ``seconds`` and ``settings``.
    """
    torch = require("torch")
    generator = torch.Generator().manual_seed(20_000 + settings.seed)
    noise = torch.randn(settings.pairs_samples, 1, SIZE, SIZE, generator=generator)
    pairs = straightening_pairs(velocity, noise, knots.grid, knots, batch_size=512)
    student = copy.deepcopy(velocity).train().requires_grad_(True)
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.learning_rate)

    def pairs_loss(model: Any) -> float:
        with torch.no_grad():
            return float(straightening_loss(model, pairs))

    loss_before = pairs_loss(velocity)
    started = time.perf_counter()
    steps = settings.epochs * -(-len(pairs) // settings.batch_size)
    bar = progress_bar(steps, "straighten", progress)
    for epoch in range(settings.epochs):
        for batch in pairs.batches(settings.batch_size, seed=settings.seed + epoch):
            loss = straightening_loss(student, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    student.eval().requires_grad_(False)
    evaluation = evaluation_noise(settings.fid_samples, seed=settings.seed)
    return {
        "k": len(knots.times) - 1,
        "times": knots.times.tolist(),
        "before": scorer.score(generate(velocity, evaluation, knots.times)),
        "after": scorer.score(generate(student, evaluation, knots.times)),
        "loss_before": loss_before,
        "loss_after": pairs_loss(student),
        "steps": steps,
        "seconds": round(seconds, 1),
        "settings": asdict(settings),
    }
