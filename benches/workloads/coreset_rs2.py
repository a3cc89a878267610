"""RS2 against full-data training on scikit-learn's digits: time to a test accuracy.

Repeated Random Sampling (Okanovic et al., arXiv 2305.18424) trains each epoch on a fresh
``fraction`` of the data, without replacement across epochs, and keeps the per-epoch
schedule (here a cosine learning rate over ``epochs``). The comparison is the paper's: the
same number of epochs, so RS2 does ``fraction`` of the work per epoch, and the question is
how long each run takes to reach a test accuracy.

Only training is timed; the clock stops while the test set is scored after each epoch.
The digits (1,797 8x8 images, 10 classes) ship inside scikit-learn: nothing is downloaded.

Examples
--------
>>> from benches.workloads import coreset_rs2
>>> data = coreset_rs2.digits(seed=0)
>>> data.x_train.shape[1], int(data.y_train.max()) + 1
(64, 10)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thrifty._extras import require
from thrifty.coreset import RS2Sampler
from thrifty.errors import InvalidArgumentError

#: Defaults of the comparison. A 64-128-10 MLP under SGD with Nesterov momentum reaches about
#: 97 % on the held-out digits with full data.
EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 0.05
HIDDEN = 128
TEST_FRACTION = 0.25
#: Both runs pass it: full data after two or three epochs, RS2 at 10 % after about twenty.
TARGET_ACCURACY = 0.95


@dataclass(frozen=True)
class Digits:
    """The digits split into train and test, standardised by the training statistics."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


@dataclass
class Curve:
    """One run: after each epoch, the training seconds so far and the test accuracy."""

    name: str
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    samples_seen: list[int] = field(default_factory=list)

    def time_to(self, target: float) -> float | None:
        """Training seconds until the test accuracy first reached ``target``, if it did."""
        for seconds, accuracy in zip(self.seconds, self.accuracy, strict=True):
            if accuracy >= target:
                return seconds
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "accuracy": self.accuracy,
            "samples_seen": self.samples_seen,
        }


def digits(*, seed: int = 0) -> Digits:
    """scikit-learn's digits as float32 tensors, split 75/25 with ``seed``."""
    torch = require("torch")
    datasets = require("sklearn.datasets")
    bunch = datasets.load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test = round(TEST_FRACTION * len(y))
    test_rows, train_rows = order[:test], order[test:]
    mean = x[train_rows].mean(axis=0)
    std = x[train_rows].std(axis=0) + 1e-3  # a few border pixels are always 0
    x = (x - mean) / std
    return Digits(
        x_train=torch.from_numpy(x[train_rows]),
        y_train=torch.from_numpy(y[train_rows]),
        x_test=torch.from_numpy(x[test_rows]),
        y_test=torch.from_numpy(y[test_rows]),
    )


def _model(seed: int) -> Any:
    torch = require("torch")
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10)
    )


def train(
    data: Digits,
    *,
    fraction: float = 1.0,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LEARNING_RATE,
    seed: int = 0,
) -> Curve:
    """Train on ``fraction`` of the data per epoch, drawn by :class:`RS2Sampler`.

    ``fraction=1.0`` is ordinary shuffled full-data training (RS2 with the whole data set
    per epoch is exactly that), so both runs share every line but the fraction.
    """
    if not 0.0 < fraction <= 1.0:
        raise InvalidArgumentError(f"fraction must be in (0, 1], got {fraction}", "fraction")
    if epochs < 1:
        raise InvalidArgumentError(f"epochs must be at least 1, got {epochs}", "epochs")
    torch = require("torch")
    n = int(data.x_train.shape[0])
    model = _model(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    sampler = RS2Sampler(n, fraction, seed=seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    name = "full data" if fraction == 1.0 else f"RS2 {fraction:.0%}"
    curve = Curve(name)
    elapsed, seen = 0.0, 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        model.train()
        indices = torch.as_tensor(np.fromiter(iter(sampler), dtype=np.int64))
        for batch in indices.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(data.x_train[batch]), data.y_train[batch]).backward()
            optimizer.step()
        schedule.step()
        elapsed += time.perf_counter() - start
        seen += int(indices.numel())
        curve.seconds.append(elapsed)
        curve.samples_seen.append(seen)
        curve.accuracy.append(accuracy(model, data))
    return curve


def accuracy(model: Any, data: Digits) -> float:
    """Top-1 accuracy on the test split."""
    torch = require("torch")
    model.eval()
    with torch.no_grad():
        predicted = model(data.x_test).argmax(dim=1)
    return float((predicted == data.y_test).float().mean())


def time_to_accuracy(
    *,
    fraction: float = 0.1,
    epochs: int = EPOCHS,
    target: float = TARGET_ACCURACY,
    seed: int = 0,
) -> dict[str, Any]:
    """RS2 at ``fraction`` per epoch against full data, both for ``epochs`` epochs.

    The result holds both curves, the target, both times to it and their ratio
    (``speedup``: full-data seconds over RS2 seconds; ``None`` if a run missed the target),
    the total training seconds and the final accuracies.
    """
    data = digits(seed=seed)
    full = train(data, fraction=1.0, epochs=epochs, seed=seed)
    rs2 = train(data, fraction=fraction, epochs=epochs, seed=seed)
    full_time, rs2_time = full.time_to(target), rs2.time_to(target)
    return {
        "fraction": fraction,
        "epochs": epochs,
        "target": target,
        "full": full.to_dict(),
        "rs2": rs2.to_dict(),
        "full_seconds_to_target": full_time,
        "rs2_seconds_to_target": rs2_time,
        "speedup": None if not full_time or not rs2_time else full_time / rs2_time,
        "total_seconds": {"full": full.seconds[-1], "rs2": rs2.seconds[-1]},
        "final_accuracy": {"full": full.accuracy[-1], "rs2": rs2.accuracy[-1]},
    }
