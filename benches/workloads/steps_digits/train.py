"""Train the digits workload's two networks and save the weights that ship beside this file.

Run ``python -m benches.workloads.steps_digits.train`` from the repository root (a few
minutes on two CPU cores). The flow is trained by conditional flow matching (Lipman et al.,
arXiv 2210.02747; Liu et al.'s rectified flow, arXiv 2209.03003) on straight paths
``x_t = t x_1 + (1 - t) x_0`` from Gaussian noise ``x_0`` to a digit ``x_1``, half of the
batches at 16 x 16 and half at 8 x 8, and an exponential moving average of its weights is
what ships. The classifier is trained on a 75 % split and reports its accuracy on the rest.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np

from benches.workloads.steps_digits.data import HALF, SIZE, digits
from benches.workloads.steps_digits.model import DigitsClassifier, DigitsFlow
from benches.workloads.steps_digits.weights import CLASSIFIER, FLOW, save
from thrifty._extras import require
from thrifty._progress import progress_bar

torch = require("torch")

FLOW_STEPS = 4000
FLOW_BATCH = 128
FLOW_LR = 2e-3
EMA_DECAY = 0.999
CLASSIFIER_EPOCHS = 30


def train_flow(*, steps: int = FLOW_STEPS, seed: int = 0, progress: bool = True) -> Any:
    """A :class:`DigitsFlow` fitted at both resolutions; returns its weights' moving average."""
    torch.manual_seed(seed)
    data = {SIZE: digits(size=SIZE)[0], HALF: digits(size=HALF)[0]}
    model = DigitsFlow()
    average = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=FLOW_LR, weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, 0.01, 1.0, total_iters=200)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps - 200)
    lr = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[200])
    rng = np.random.default_rng(seed)
    bar = progress_bar(steps, "flow", progress)
    for step in range(steps):
        images = data[SIZE if step % 2 == 0 else HALF]
        x1 = images[torch.as_tensor(rng.integers(0, len(images), FLOW_BATCH))]
        x0 = torch.randn_like(x1)
        t = torch.rand(FLOW_BATCH)
        xt = t[:, None, None, None] * x1 + (1 - t[:, None, None, None]) * x0
        loss = (model(xt, t) - (x1 - x0)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr.step()
        with torch.no_grad():
            # Warm the average up with the model (decay grows from 0) so early weights fade.
            decay = min(EMA_DECAY, (1 + step) / (10 + step))
            for kept, live in zip(average.parameters(), model.parameters(), strict=True):
                kept.lerp_(live, 1 - decay)
        bar.update(1)
    bar.close()
    return average.eval()


def train_classifier(*, epochs: int = CLASSIFIER_EPOCHS, seed: int = 0) -> tuple[Any, float]:
    """A :class:`DigitsClassifier` and its accuracy on a held-out quarter of the digits."""
    torch.manual_seed(seed)
    images, labels = digits(size=SIZE)
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(images)))
    split = len(images) * 3 // 4
    train, test = order[:split], order[split:]
    model = DigitsClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in train[torch.randperm(split)].split(64):
            # One-pixel random shifts, so the features describe shapes rather than positions.
            shift = [int(s) for s in torch.randint(-1, 2, (2,))]
            x = torch.roll(images[batch], shifts=shift, dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(images[test]).argmax(1) == labels[test]).float().mean())
    return model, accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=FLOW_STEPS, help="flow training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flow-only", action="store_true", help="keep the shipped classifier")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if not args.flow_only:
        classifier, accuracy = train_classifier(seed=args.seed)
        seconds = time.perf_counter() - started
        print(f"classifier: held-out accuracy {accuracy:.4f} ({seconds:.0f} s)")
        save(classifier, CLASSIFIER)
        started = time.perf_counter()
    flow = train_flow(steps=args.steps, seed=args.seed)
    print(f"flow: {args.steps} steps ({time.perf_counter() - started:.0f} s)")
    save(flow, FLOW)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
