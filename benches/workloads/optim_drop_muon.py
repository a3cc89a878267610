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

``resolution`` upsamples the digits (bilinear) so that the convolutions, and with them the
backward pass Drop-Muon shortens, cost what they cost on real image sizes; the default stays
8. ``sampler`` takes the names in ``SAMPLERS``: besides the paper's uniform draw, the
distributions of :func:`~thrifty.optim.start_distribution` from per-layer backward costs
(:func:`backward_costs`), smoothness (:func:`layer_smoothness`) or both, estimated on the
model before the clock starts. :func:`cost_split` profiles one Muon step.

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

import copy
import time
from collections.abc import Callable, Sequence
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
#: Named start-index samplers: the paper's uniform one, and :func:`start_distribution` from
#: the measured costs (FLOPs), the estimated smoothness, or both.
SAMPLERS = ("uniform", "cost", "smoothness", "cost-smoothness")
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
    #: Drop-Muon's start-index probabilities, and the untimed seconds spent estimating them.
    distribution: list[float] = field(default_factory=list)
    estimate_seconds: float = 0.0

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
            "distribution": self.distribution,
            "estimate_seconds": self.estimate_seconds,
            # The count of each start index, not the per-step list: it is what a reader asks.
            "start_counts": [self.starts.count(s) for s in range(self.layers)]
            if self.starts
            else [],
        }


def check_resolution(resolution: Any) -> int:
    """A side of at least 8 pixels, a multiple of 8 (the pools halve it evenly)."""
    side = check_int(resolution, "resolution", minimum=8)
    if side % 8:
        raise InvalidArgumentError(f"resolution must be a multiple of 8, got {side}", "resolution")
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


def _loss(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(images), labels)


def backward_costs(
    model: torch.nn.Module,
    layers: list[torch.nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    clock: str = "flops",
    repeats: int = 3,
) -> tuple[list[float], float]:
    """Per-layer costs ``c_i`` of a Drop-Muon step, and the cost every step pays.

    ``c(s)`` is the cost of the backward pass and the optimizer update of one step that
    starts at ``s`` (``layers[:s]`` frozen), on a copy of the model; ``c(L) = 0`` and
    ``c_i = c(i) - c(i + 1)``. That difference holds what starting one layer lower adds:
    layer ``i``'s weight gradient and Newton-Schulz work, and the input gradient of layer
    ``i + 1``, which is only needed when something below is trained. The fixed cost is the
    forward pass. ``clock="flops"`` counts floating-point operations with
    ``torch.utils.flop_counter`` (convolutions and matrix products only: activations,
    pooling and Python overhead are free to it, so it is deterministic but optimistic for
    small layers); ``clock="seconds"`` takes the fastest of ``repeats`` timings (noisy on a
    loaded machine; differences are clipped to a small positive floor).
    """
    check_choice(clock, "clock", ("flops", "seconds"))
    from torch.utils.flop_counter import FlopCounterMode

    def measure(work: Callable[[], object]) -> float:
        if clock == "flops":
            with FlopCounterMode(display=False) as counter:
                work()
            return float(counter.get_total_flops())
        began = time.perf_counter()
        work()
        return time.perf_counter() - began

    position = {id(m): i for i, m in enumerate(model.modules())}
    totals: list[float] = []
    for start in range(len(layers)):
        # A copy, so that the measured steps leave the model as it was.
        copy_model = copy.deepcopy(model)
        copies = list(copy_model.modules())
        copy_layers = [copies[position[id(layer)]] for layer in layers]
        one_hot = [float(i == start) for i in range(len(layers))]
        opt = DropMuon(copy_layers, lr=LR, sampler=one_hot)

        def backward_and_update(opt: DropMuon = opt, model: torch.nn.Module = copy_model) -> None:
            opt.zero_grad()
            _loss(model, images, labels).backward()  # type: ignore[no-untyped-call]
            opt.step()

        best = float("inf")
        for _ in range(1 if clock == "flops" else repeats):
            opt.begin_step()
            # The forward pass is inside the measure too, and taken out below.
            best = min(best, measure(backward_and_update))
        totals.append(best)
    with torch.no_grad():
        forward = min(
            measure(lambda: _loss(model, images, labels))
            for _ in range(1 if clock == "flops" else repeats)
        )
    totals = [total - forward for total in totals]
    totals.append(0.0)
    differences = [totals[i] - totals[i + 1] for i in range(len(layers))]
    floor = 1e-3 * max(max(differences), 1e-12)
    return [max(d, floor) for d in differences], forward


def layer_smoothness(
    model: torch.nn.Module,
    layers: list[torch.nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batches: int = 3,
    batch: int = 128,
    step: float = LR,
    seed: int = 0,
) -> list[float]:
    """Per-layer smoothness ``L_i`` of the loss along Muon's direction, by finite differences.

    For each of ``batches`` random batches and each layer, ``D`` is the layer's gradient with
    every matrix (conv kernels flattened to ``out x in*k*k``) orthogonalised by
    :func:`~thrifty.optim.newton_schulz`, the direction of Muon's first step, of spectral
    norm about 1; biases stay put. Then ``L_i ~ 2 (f(X - t D) - f(X) + t <g, D>) / t^2``
    with ``t = step``, the curvature of the loss along the step Muon would take. The
    estimates are averaged over the batches and clipped to ``1e-3`` of the largest.

    Limits: it is the curvature at initialisation, along one direction (not the worst
    case a smoothness constant bounds), at one step length (a larger ``t`` mixes in
    higher-order terms, a smaller one drowns in float32 rounding), on a batch rather than
    the whole loss; a layer where the loss is concave along ``D`` is only known to be
    flatter than the others. Training changes all of it.
    """
    generator = torch.Generator().manual_seed(seed)
    sums = [0.0] * len(layers)
    for _ in range(batches):
        index = torch.randperm(len(labels), generator=generator)[:batch]
        x, y = images[index], labels[index]
        params = [p for layer in layers for p in layer.parameters()]
        loss = _loss(model, x, y)
        grads = dict(zip(params, torch.autograd.grad(loss, params), strict=True))
        base = float(loss.detach())
        with torch.no_grad():
            for i, layer in enumerate(layers):
                matrices = [p for p in layer.parameters() if p.ndim >= 2]
                directions = [
                    newton_schulz(grads[p].reshape(p.shape[0], -1)).reshape(p.shape)
                    for p in matrices
                ]
                pairs = list(zip(matrices, directions, strict=True))
                inner = sum(float((grads[p] * d).sum()) for p, d in pairs)
                saved = [p.clone() for p in matrices]
                for p, d in pairs:
                    p.sub_(d, alpha=step)
                moved = float(_loss(model, x, y))
                for p, original in zip(matrices, saved, strict=True):
                    p.copy_(original)
                sums[i] += 2.0 * (moved - base + step * inner) / step**2
    means = [total / batches for total in sums]
    floor = 1e-3 * max(max(means), 1e-12)
    return [max(m, floor) for m in means]


def sampler_weights(
    sampler: str,
    model: torch.nn.Module,
    layers: list[torch.nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    batch: int = BATCH,
) -> list[float]:
    """The start-index probabilities of a named sampler (see ``SAMPLERS``) for this model.

    Costs are counted on one training batch of ``batch`` images: Newton-Schulz work does
    not grow with the batch, so the split between layers depends on it.
    """
    check_choice(sampler, "sampler", SAMPLERS)
    if sampler == "uniform":
        return [1.0 / len(layers)] * len(layers)
    smoothness = cost = None
    fixed = 0.0
    if sampler in ("cost", "cost-smoothness"):
        cost, fixed = backward_costs(model, layers, images[:batch], labels[:batch])
    if sampler in ("smoothness", "cost-smoothness"):
        smoothness = layer_smoothness(model, layers, images, labels, seed=seed)
    return [float(p) for p in start_distribution(smoothness, cost, fixed_cost=fixed)]


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
    resolution: int = RESOLUTION,
    batch: int = BATCH,
    lr: float = LR,
) -> Run:
    """Train with ``"muon"`` or ``"drop-muon"``; ``limit`` caps the training images.

    ``sampler`` is Drop-Muon's start-index sampler: one of ``SAMPLERS`` (estimated from
    this model and the training images by :func:`sampler_weights`, before the clock starts;
    the seconds it took are in ``Run.estimate_seconds``), or weights or a callable as
    :class:`~thrifty.optim.DropMuon` takes them. ``resolution`` is the side the digits are
    upsampled to, ``lr`` Muon's learning rate for both methods.
    """
    check_choice(method, "method", METHODS)
    if epochs < 1:
        raise InvalidArgumentError(f"epochs must be at least 1, got {epochs}", "epochs")
    check_int(batch, "batch", minimum=1)
    train_x, train_y, test_x, test_y = digits(seed, resolution)
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    model, layers = network(seed, resolution)
    label = LABELS[method]
    if method == "drop-muon" and sampler != "uniform":
        label = f"Drop-Muon ({sampler if isinstance(sampler, str) else 'given weights'})"
    run = Run(label, len(layers))
    if method == "drop-muon" and isinstance(sampler, str):
        began = time.perf_counter()
        sampler = sampler_weights(sampler, model, layers, train_x, train_y, seed=seed, batch=batch)
        run.estimate_seconds = time.perf_counter() - began
        run.distribution = list(sampler)
    optimizers: list[torch.optim.Optimizer]
    drop = None
    if method == "muon":
        params = [p for layer in layers for p in layer.parameters()]
        matrices = Muon([p for p in params if p.ndim >= 2], lr=lr)
        vectors = torch.optim.AdamW(
            [p for p in params if p.ndim < 2], lr=ADAMW_LR, betas=(0.9, 0.95), eps=1e-10
        )
        optimizers = [matrices, vectors]
    else:
        drop = DropMuon(layers, lr=lr, adamw_lr=ADAMW_LR, sampler=sampler, seed=seed)
        optimizers = [drop]

    def record(clock: float, step: int) -> None:
        loss, accuracy = evaluate(model, test_x, test_y)
        run.seconds.append(clock)
        run.steps.append(step)
        run.loss.append(loss)
        run.accuracy.append(accuracy)

    warm_up = torch.nn.functional.cross_entropy(model(train_x[:batch]), train_y[:batch])
    warm_up.backward()  # type: ignore[no-untyped-call]
    model.zero_grad(set_to_none=True)
    batches = torch.Generator().manual_seed(seed + 1)
    clock, step = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(train_y), generator=batches)
        for first in range(0, len(order), batch):
            index = order[first : first + batch]
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


def cost_split(
    *, resolution: int = RESOLUTION, batch: int = BATCH, seed: int = 0, steps: int = 3
) -> dict[str, float]:
    """Milliseconds per Muon step by part, from ``torch.profiler``, averaged over ``steps``.

    ``forward``, ``backward``, ``muon`` (the matrices' update, Newton-Schulz included),
    ``newton_schulz`` (its matrix products, the ``aten::matmul`` calls, which nothing else
    in a step makes), ``adamw`` (the biases) and ``eval`` (the test set, once). Each part
    is recorded with ``record_function`` after one untimed step; the profiler's own
    overhead is in every part.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    train_x, train_y, test_x, test_y = digits(seed, resolution)
    model, layers = network(seed, resolution)
    params = [p for layer in layers for p in layer.parameters()]
    matrices = Muon([p for p in params if p.ndim >= 2], lr=LR)
    vectors = torch.optim.AdamW([p for p in params if p.ndim < 2], lr=ADAMW_LR)
    x, y = train_x[:batch], train_y[:batch]

    def step() -> None:
        for opt in (matrices, vectors):
            opt.zero_grad()
        with record_function("forward"):
            loss = _loss(model, x, y)
        with record_function("backward"):
            loss.backward()  # type: ignore[no-untyped-call]
        with record_function("muon"):
            matrices.step()
        with record_function("adamw"):
            vectors.step()
        with record_function("eval"):
            evaluate(model, test_x, test_y)

    step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    totals = {event.key: event.cpu_time_total for event in profiler.key_averages()}
    parts = ("forward", "backward", "muon", "adamw", "eval")
    split = {part: totals.get(part, 0.0) / steps / 1e3 for part in parts}
    split["newton_schulz"] = totals.get("aten::matmul", 0.0) / steps / 1e3
    return split


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


def compare(
    seed: int,
    epochs: int = EPOCHS,
    sampler: Any = "uniform",
    *,
    drop_lr: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Both methods with the same ``seed`` and ``epochs``: the :func:`summary`.

    Muon trains first on even seeds and second on odd ones, so that whatever the first run
    of a process pays (page faults, cold caches) does not always fall on the same side.
    ``options`` (``resolution``, ``batch``, ``lr``) go to :func:`train` for both, except
    that Drop-Muon takes ``drop_lr`` when it is given (each method at its tuned lr).
    """
    order = METHODS if seed % 2 == 0 else METHODS[::-1]
    per_method = {"muon": options, "drop-muon": options}
    if drop_lr is not None:
        per_method["drop-muon"] = {**options, "lr": drop_lr}
    runs = {
        method: train(method, seed=seed, epochs=epochs, sampler=sampler, **per_method[method])
        for method in order
    }
    drop = runs["drop-muon"]
    return {
        "seed": seed,
        **summary(runs["muon"], drop),
        "distribution": drop.distribution,
        "estimate_seconds": drop.estimate_seconds,
        "mean_layers_trained": drop.mean_layers_trained,
        # Test accuracy against training seconds, for a figure.
        "curves": {
            method: {"label": run.label, "seconds": run.seconds, "accuracy": run.accuracy}
            for method, run in runs.items()
        },
    }


def tune_lr(
    method: str,
    lrs: Sequence[float],
    seeds: Sequence[int],
    epochs: int = EPOCHS,
    sampler: Any = "uniform",
    **options: Any,
) -> dict[str, Any]:
    """The lr of ``lrs`` with the best mean final accuracy over ``seeds`` for ``method``.

    Every method gets the same grid and seeds, the same budget of trials; the tuning seeds
    should be disjoint from those the comparison is measured on. Final accuracy, not time
    to a target, is the criterion: an lr that plateaus low reaches its own plateau fast.
    """
    check_choice(method, "method", METHODS)
    if not lrs or not seeds:
        raise InvalidArgumentError("lrs and seeds must not be empty", "lrs")
    scores = {}
    for lr in lrs:
        runs = [
            train(method, seed=seed, epochs=epochs, sampler=sampler, **{**options, "lr": lr})
            for seed in seeds
        ]
        scores[lr] = sum(run.final_accuracy for run in runs) / len(runs)
    best = max(scores, key=lambda lr: scores[lr])
    return {"method": method, "best_lr": best, "mean_final_accuracy": scores}
