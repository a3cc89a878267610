"""Drop-Muon against Muon on a small CNN over scikit-learn's digits, on the CPU.

Both train the same CNN (three convs of the paper's widths, 64, 128 and 256 channels, a
hidden linear layer and the head: five layers) on the 8x8 digits for the same epochs,
batches and seeds, with the paper's learning rate (0.1) and the largest batch that still
gives a few steps per epoch (256 of 1347 images; the paper's 8192 is more than the data).
The baseline is :class:`~thrifty.optim.Muon` on every weight matrix plus
``torch.optim.AdamW`` on the biases: exactly :class:`~thrifty.optim.DropMuon` with ``s = 0``
at every step, so the only difference is that Drop-Muon (arXiv 2510.02239) trains a
uniformly drawn suffix of the layers and backpropagates only through it.

The clock runs during training only, after one untimed forward and backward pass that
warms the allocator and thread pool for both alike; the test loss and accuracy are taken
after every step with the clock stopped. The figure of merit is the training time until the
running mean of ``FINAL_EVALS`` test accuracies first reaches the baseline's final one (the
same mean over its last evaluations): one evaluation on 450 images moves by 0.2 % per
image, and a single lucky evaluation would otherwise decide the time. The paper reports up
to 1.4x. :func:`compare` alternates which method trains first, seed by seed.

This is the workload of ``benches/bench_optim.py`` and of ``examples/schedule_demo.py``. The
digits ship inside scikit-learn (``thrifty[datasets]``): nothing is downloaded.

Examples
--------
>>> from benches.workloads import optim_drop_muon as workload
>>> run = workload.train("drop-muon", seed=0, epochs=1, limit=300)
>>> run.steps, len(run.seconds) == len(run.accuracy) == len(run.loss)
([1, 2], True)
>>> set(run.starts) <= set(range(len(workload.network(0)[1])))
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from thrifty._checks import check_choice, check_int
from thrifty._extras import require

require("torch")  # without torch, the error names the extra that installs it
import torch  # noqa: E402

from thrifty.errors import InvalidArgumentError  # noqa: E402
from thrifty.optim import DropMuon, Muon, newton_schulz, start_distribution  # noqa: E402

EPOCHS = 6
BATCH = 256
RESOLUTION = 8  # pixels a side; the digits are 8x8
EVAL_EVERY = 1  # steps
LR, ADAMW_LR = 0.1, 3e-3  # Muon's is the paper's (arXiv 2510.02239, MNIST)
WIDTHS = (64, 128, 256)  # the paper's conv channels
HIDDEN = 128
#: Evaluations averaged into the final accuracy: one test point of 450 images is noisy.
FINAL_EVALS = 3
METHODS = ("muon", "drop-muon")
LABELS = {"muon": "Muon + AdamW", "drop-muon": "Drop-Muon (uniform)"}


@dataclass
class Run:
    """One training run, with a point after every ``EVAL_EVERY`` steps and at the end.

    ``seconds`` is the training time so far, ``steps`` the optimizer steps so far, ``loss``
    and ``accuracy`` the test cross-entropy and top-1 accuracy. ``starts`` holds
    Drop-Muon's start index of every step (empty for Muon) over ``layers`` layers.
    """

    label: str
    layers: int
    seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        tail = self.accuracy[-FINAL_EVALS:]
        return sum(tail) / len(tail)

    @property
    def total_seconds(self) -> float:
        return self.seconds[-1]

    @property
    def mean_layers_trained(self) -> float:
        """Layers updated (and backpropagated through) per step, on average."""
        if not self.starts:
            return float(self.layers)
        return self.layers - sum(self.starts) / len(self.starts)

    def seconds_to(self, accuracy: float) -> float | None:
        """Training seconds until the running mean of ``FINAL_EVALS`` test accuracies first
        reached ``accuracy`` (the window :attr:`final_accuracy` averages), if it did."""
        for last in range(FINAL_EVALS, len(self.accuracy) + 1):
            if sum(self.accuracy[last - FINAL_EVALS : last]) / FINAL_EVALS >= accuracy:
                return self.seconds[last - 1]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "seconds": self.seconds,
            "steps": self.steps,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "final_accuracy": self.final_accuracy,
            "total_seconds": self.total_seconds,
            "layers": self.layers,
            "mean_layers_trained": self.mean_layers_trained,
            # The count of each start index, not the per-step list: it is what a reader asks.
            "start_counts": [self.starts.count(s) for s in range(self.layers)]
            if self.starts
            else [],
        }


def check_resolution(resolution: Any) -> int:
    """A side of at least 8 pixels, a multiple of 8 (the pools halve it evenly)."""
    side = check_int(resolution, "resolution", minimum=8)
    if side % 8:
        raise InvalidArgumentError(
            f"resolution must be a multiple of 8, got {side}", "resolution"
        )
    return side


def digits(
    seed: int, resolution: int = RESOLUTION
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and test images and labels (3/4 and 1/4 of the 1797 digits), split by ``seed``.

    The 8x8 images are upsampled bilinearly to ``resolution`` pixels a side: no detail is
    added, but the convolutions then cost what they cost on a real image size.
    """
    datasets = require("sklearn.datasets")
    side = check_resolution(resolution)
    data = datasets.load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if side != 8:
        images = torch.nn.functional.interpolate(
            images, size=(side, side), mode="bilinear", align_corners=False
        )
    labels = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = len(labels) * 3 // 4
    return images[order[:cut]], labels[order[:cut]], images[order[cut:]], labels[order[cut:]]


def network(
    seed: int, resolution: int = RESOLUTION
) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The CNN, and its five layers in forward order (Drop-Muon's unit of dropping).

    At 8 pixels the second conv is followed by a 2x2 max-pool, so the third works at 4x4.
    Above 16 pixels a pool also follows the first conv, and the third conv's output is
    max-pooled to 4x4: the hidden layer always sees 256 x 4 x 4 features, and at 32 pixels
    the second and third convs work at 16x16 and 8x8.
    """
    side = check_resolution(resolution)
    torch.manual_seed(seed)
    first, second, third = WIDTHS
    layers: list[torch.nn.Module] = [
        torch.nn.Conv2d(1, first, 3, padding=1),
        torch.nn.Conv2d(first, second, 3, padding=1),
        torch.nn.Conv2d(second, third, 3, padding=1),
        torch.nn.Linear(third * 4 * 4, HIDDEN),
        torch.nn.Linear(HIDDEN, 10),
    ]
    relu = torch.nn.ReLU
    modules: list[torch.nn.Module] = [layers[0], relu()]
    if side > 16:
        modules.append(torch.nn.MaxPool2d(2))
        side //= 2
    modules += [layers[1], relu(), torch.nn.MaxPool2d(2), layers[2], relu()]
    if side > 8:
        modules.append(torch.nn.AdaptiveMaxPool2d(4))
    modules += [torch.nn.Flatten(), layers[3], relu(), layers[4]]
    return torch.nn.Sequential(*modules), layers


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` on ``images``."""
    logits = model(images)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    return float(loss), float((logits.argmax(1) == labels).float().mean())


def train(
    method: str,
    *,
    seed: int = 0,
    epochs: int = EPOCHS,
    limit: int | None = None,
    sampler: Any = "uniform",
) -> Run:
    """Train with ``"muon"`` or ``"drop-muon"``; ``limit`` caps the training images.

    ``sampler`` is Drop-Muon's start-index sampler (see :class:`~thrifty.optim.DropMuon`).
    """
    check_choice(method, "method", METHODS)
    if epochs < 1:
        raise InvalidArgumentError(f"epochs must be at least 1, got {epochs}", "epochs")
    train_x, train_y, test_x, test_y = digits(seed)
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    model, layers = network(seed)
    run = Run(LABELS[method], len(layers))
    optimizers: list[torch.optim.Optimizer]
    drop = None
    if method == "muon":
        params = [p for layer in layers for p in layer.parameters()]
        matrices = Muon([p for p in params if p.ndim >= 2], lr=LR)
        vectors = torch.optim.AdamW(
            [p for p in params if p.ndim < 2], lr=ADAMW_LR, betas=(0.9, 0.95), eps=1e-10
        )
        optimizers = [matrices, vectors]
    else:
        drop = DropMuon(layers, lr=LR, adamw_lr=ADAMW_LR, sampler=sampler, seed=seed)
        optimizers = [drop]

    def record(clock: float, step: int) -> None:
        loss, accuracy = evaluate(model, test_x, test_y)
        run.seconds.append(clock)
        run.steps.append(step)
        run.loss.append(loss)
        run.accuracy.append(accuracy)

    warm_up = torch.nn.functional.cross_entropy(model(train_x[:BATCH]), train_y[:BATCH])
    warm_up.backward()  # type: ignore[no-untyped-call]
    model.zero_grad(set_to_none=True)
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
            loss.backward()  # type: ignore[no-untyped-call]
            for opt in optimizers:
                opt.step()
            clock += time.perf_counter() - began
            step += 1
            if step % EVAL_EVERY == 0:
                record(clock, step)
    if step % EVAL_EVERY:
        record(clock, step)
    return run


def summary(muon: Run, drop: Run) -> dict[str, Any]:
    """Muon's final accuracy as the target, both times to it, and their ratio.

    ``speedup`` is Muon's seconds over Drop-Muon's, ``None`` when either run missed the
    target (Muon can: its final accuracy is a mean of its last evaluations).
    """
    target = muon.final_accuracy
    muon_s, drop_s = muon.seconds_to(target), drop.seconds_to(target)
    return {
        "target_accuracy": target,
        "muon_seconds_to_target": muon_s,
        "drop_seconds_to_target": drop_s,
        "speedup": None if drop_s is None or muon_s is None else muon_s / drop_s,
        "muon_total_seconds": muon.total_seconds,
        "drop_total_seconds": drop.total_seconds,
        "drop_final_accuracy": drop.final_accuracy,
    }


def compare(seed: int, epochs: int = EPOCHS, sampler: Any = "uniform") -> dict[str, Any]:
    """Both methods with the same ``seed`` and ``epochs``: the :func:`summary`.

    Muon trains first on even seeds and second on odd ones, so that whatever the first run
    of a process pays (page faults, cold caches) does not always fall on the same side.
    """
    order = METHODS if seed % 2 == 0 else METHODS[::-1]
    runs = {method: train(method, seed=seed, epochs=epochs, sampler=sampler) for method in order}
    return {"seed": seed, **summary(runs["muon"], runs["drop-muon"])}
