"""Drop-Muon against Muon: wall time to Muon's final accuracy, a small CNN on digits.

Both train the same CNN (three convs, a hidden linear layer and the head, as five layers)
on scikit-learn's 8x8 digits, on the CPU, for the same epochs, batches and seeds. The
baseline is :class:`thrifty.optim.Muon` on every weight matrix plus ``torch.optim.AdamW``
on the biases: exactly :class:`thrifty.optim.DropMuon` with ``s = 0`` at every step
(``tests/optim/test_drop_muon.py`` checks that), so the only difference is that Drop-Muon
(arXiv 2510.02239) trains a uniformly drawn suffix of the layers and backpropagates only
through it. The clock runs during training only; the test accuracy is taken every
``EVAL_EVERY`` steps with the clock stopped. The figure of merit, in ``extra_info``, is
``seconds_to_target``: the training time until the test accuracy first reaches the
baseline's final one, the mean of its last ``FINAL_EVALS`` evaluations (``speedup`` =
Muon's over Drop-Muon's; the paper reports up to 1.4x).

Under ``--benchmark-disable`` (``make test``) each method trains 30 steps and the
test checks that it learned (accuracy well above chance). Run as a script,
``python benches/bench_optim.py [SEEDS]`` prints the comparison over several seeds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from thrifty import optim  # noqa: E402
from thrifty._extras import available, require  # noqa: E402

THREADS = 2  # the cores of the machine the README's numbers come from
EPOCHS = 8
BATCH = 32
EVAL_EVERY = 10  # steps
LR, ADAMW_LR = 0.02, 3e-3
FINAL_EVALS = 3  # evaluations averaged into the final accuracy


@dataclass
class Run:
    """A training run: (training seconds, test accuracy) after every ``EVAL_EVERY`` steps."""

    label: str
    curve: list[tuple[float, float]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        # The mean of the last evaluations: one test point of 450 images is a noisy target.
        tail = [a for _, a in self.curve[-FINAL_EVALS:]]
        return sum(tail) / len(tail)

    def seconds_to(self, accuracy: float) -> float | None:
        return next((t for t, a in self.curve if a >= accuracy), None)


def digits(seed: int) -> tuple[Any, Any, Any, Any]:
    """Train and test tensors (3/4, 1/4 of the 1797 images), split by ``seed``."""
    datasets = require("sklearn.datasets")
    data = datasets.load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = len(labels) * 3 // 4
    return images[order[:cut]], labels[order[:cut]], images[order[cut:]], labels[order[cut:]]


def network(seed: int) -> tuple[Any, list[Any]]:
    """The CNN, and its five layers in forward order (Drop-Muon's unit of dropping)."""
    torch.manual_seed(seed)
    layers = [
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.Linear(32 * 4 * 4, 64),
        torch.nn.Linear(64, 10),
    ]
    relu = torch.nn.ReLU
    model = torch.nn.Sequential(
        layers[0], relu(), layers[1], relu(), torch.nn.MaxPool2d(2),
        layers[2], relu(), torch.nn.Flatten(), layers[3], relu(), layers[4],
    )  # fmt: skip
    return model, layers


def train(
    method: str, *, seed: int, epochs: int, limit: int | None = None, sampler: Any = "uniform"
) -> Run:
    """Train with ``"muon"`` or ``"drop-muon"``; ``limit`` caps the training images."""
    train_x, train_y, test_x, test_y = digits(seed)
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    model, layers = network(seed)
    run = Run("Muon + AdamW" if method == "muon" else "Drop-Muon (uniform)")
    if method == "muon":
        params = [p for layer in layers for p in layer.parameters()]
        matrices = optim.Muon([p for p in params if p.ndim >= 2], lr=LR)
        vectors = torch.optim.AdamW(
            [p for p in params if p.ndim < 2], lr=ADAMW_LR, betas=(0.9, 0.95), eps=1e-10
        )
        optimizers: list[Any] = [matrices, vectors]
        drop = None
    else:
        drop = optim.DropMuon(layers, lr=LR, adamw_lr=ADAMW_LR, sampler=sampler, seed=seed)
        optimizers = [drop]
    batches = torch.Generator().manual_seed(seed + 1)
    clock, step = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(train_y), generator=batches)
        for first in range(0, len(order), BATCH):
            index = order[first : first + BATCH]
            began = time.perf_counter()
            if drop is not None:
                run.starts.append(drop.begin_step())
            for opt in optimizers:
                opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(train_x[index]), train_y[index])
            loss.backward()
            for opt in optimizers:
                opt.step()
            clock += time.perf_counter() - began
            step += 1
            if step % EVAL_EVERY == 0:
                run.curve.append((clock, accuracy(model, test_x, test_y)))
    run.curve.append((clock, accuracy(model, test_x, test_y)))
    return run


@torch.no_grad()
def accuracy(model: Any, images: Any, labels: Any) -> float:
    return float((model(images).argmax(1) == labels).float().mean())


def compare(seed: int, epochs: int = EPOCHS) -> dict[str, Any]:
    muon = train("muon", seed=seed, epochs=epochs)
    drop = train("drop-muon", seed=seed, epochs=epochs)
    target = muon.final_accuracy
    muon_s, drop_s = muon.seconds_to(target), drop.seconds_to(target)
    return {
        "seed": seed,
        "target_accuracy": target,
        "muon_seconds_to_target": muon_s,
        "drop_seconds_to_target": drop_s,
        "speedup": None if drop_s is None or muon_s is None else muon_s / drop_s,
        "muon_total_seconds": muon.curve[-1][0],
        "drop_total_seconds": drop.curve[-1][0],
        "drop_final_accuracy": drop.final_accuracy,
    }


_runs: dict[str, Run] = {}


@pytest.mark.parametrize("method", ["muon", "drop-muon"])
def test_drop_muon_vs_muon(benchmark: Any, method: str, request: pytest.FixtureRequest) -> None:
    if not available("sklearn.datasets"):
        pytest.skip("scikit-learn (thrifty[datasets]) is needed for the digits")
    torch.set_num_threads(THREADS)
    untimed = request.config.getoption("benchmark_disable")
    epochs, limit = (2, 480) if untimed else (EPOCHS, None)
    benchmark.group = f"drop-muon vs muon, digits CNN, {epochs} epochs"
    runs: list[Run] = []
    benchmark.pedantic(
        lambda: runs.append(train(method, seed=0, epochs=epochs, limit=limit)),
        rounds=1,
        iterations=1,
    )
    run = runs[-1]
    _runs[method] = run
    # 10 classes: chance is 0.1; after 30 steps both are well above it (measured 0.39-0.6).
    assert run.final_accuracy > 0.25
    if method == "drop-muon":
        assert set(run.starts) == set(range(5))
    info: dict[str, Any] = {
        "role": "baseline" if method == "muon" else "ours",
        "label": run.label,
        "final_accuracy": run.final_accuracy,
        "train_seconds": run.curve[-1][0],
    }
    baseline = _runs.get("muon")
    if method == "drop-muon" and baseline is not None:
        target = baseline.final_accuracy
        ours_s, theirs_s = run.seconds_to(target), baseline.seconds_to(target)
        info.update(target_accuracy=target, seconds_to_target=ours_s)
        if ours_s is not None and theirs_s is not None:
            info["speedup"] = theirs_s / ours_s
    benchmark.extra_info.update(info)


if __name__ == "__main__":
    torch.set_num_threads(THREADS)
    seeds = range(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    for seed in seeds:
        print(compare(seed), flush=True)
