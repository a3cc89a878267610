"""Fuzz entries of thrifty.optim: Newton-Schulz, Muon, Drop-Muon, AdaGrad-Norm, param groups."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from fuzz_core import Case, entry, expect
from fuzz_values import chance, choice, flag, integer, pick, real, size

from thrifty import optim

# Step sizes and decays must fit float32 (torch cannot apply a larger alpha to it); the
# Newton-Schulz floor must also stay above float32's smallest normal number.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _loop_count(rng: np.random.Generator, typical: int) -> tuple[Any, bool | None, str]:
    """An iteration count: valid small ones, or invalid ones, never a huge valid one (a count
    of 2**62 iterations is a request for a very long run, not a fault)."""
    value, ok, label = integer(rng, 1, None, typical=typical)
    if ok is not False and isinstance(value, (int, np.integer)) and int(value) > 50:
        return typical, True, f"int {typical}"
    return value, ok, label


@entry("optim.newton_schulz", fast_calls=40, weight=0.5)
def newton_schulz(rng: np.random.Generator) -> Case:
    batch = tuple(size(rng, 1, 3) for _ in range(int(rng.integers(0, 2))))
    rows, cols = size(rng, 1, 24), size(rng, 1, 24)
    dtype = pick(rng, (torch.float32, torch.float64, torch.float16, torch.bfloat16))
    x = torch.from_numpy(rng.standard_normal((*batch, rows, cols))).to(dtype)
    if chance(rng, 0.1):
        x = torch.zeros_like(x)
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    labels = [f"{tuple(x.shape)} {dtype}"]
    if chance(rng, 0.3):
        kwargs["steps"], ok, label = _loop_count(rng, 5)
        valid, labels = _and(valid, ok), [*labels, f"steps {label}"]
    if chance(rng, 0.15):
        kwargs["coefficients"] = pick(
            rng, ((1.5, -0.5, 0.0), (1.0, 2.0), (math.nan, 0.0, 0.0), "abc", None, (1, 2, 3, 4))
        )
        ok = kwargs["coefficients"] == (1.5, -0.5, 0.0)
        valid, labels = _and(valid, ok), [*labels, f"coefficients {kwargs['coefficients']!r}"]
    if chance(rng, 0.15):
        kwargs["eps"], ok, label = real(rng, FLOAT32_TINY, FLOAT32_MAX, typical=(1e-9, 1e-3))
        valid, labels = _and(valid, ok), [*labels, f"eps {label}"]
    matrices: Any = x
    if chance(rng, 0.1):
        matrices, valid = (
            pick(
                rng,
                (
                    x.numpy() if dtype in (torch.float32, torch.float64) else None,
                    x.reshape(-1),
                    [1.0, 2.0],
                ),
            ),
            False,
        )
        labels.append("not a matrix tensor")
    if valid is not True:
        return Case(optim.newton_schulz, (matrices,), kwargs, valid, label="; ".join(labels))

    def check(out: Any) -> None:
        expect(out.shape == x.shape and out.dtype == x.dtype, f"{out.shape} {out.dtype}")
        expect(bool(torch.isfinite(out).all()), "non-finite output")
        if not bool(x.any()):
            expect(not bool(out.any()), "a zero matrix did not stay zero")
        elif "coefficients" not in kwargs and "steps" not in kwargs:
            s = torch.linalg.svdvals(out.double())
            expect(float(s.max()) < 1.35, f"singular value {float(s.max())} above the band")

    return Case(optim.newton_schulz, (matrices,), kwargs, True, check, "; ".join(labels))


def _muon_options(rng: np.random.Generator) -> tuple[dict[str, Any], bool | None, str]:
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    labels = []
    specs = {
        "lr": lambda: real(rng, 0.0, FLOAT32_MAX, low_open=True, typical=(1e-3, 0.1)),
        "momentum": lambda: real(rng, 0.0, 1.0, high_open=True, typical=(0.0, 0.99)),
        "nesterov": lambda: flag(rng),
        "ns_steps": lambda: _loop_count(rng, 5),
        "weight_decay": lambda: real(rng, 0.0, FLOAT32_MAX, typical=(0.0, 0.2)),
        "adjust_lr": lambda: choice(rng, ("original", "match_rms_adamw", "spectral_unclamped")),
    }
    for name, draw in specs.items():
        if chance(rng, 0.35):
            kwargs[name], ok, label = draw()
            if name == "nesterov" and not isinstance(kwargs[name], bool):
                ok = False
            valid, labels = _and(valid, ok), [*labels, f"{name} {label}"]
    return kwargs, valid, "; ".join(labels)


def _grads_for(rng: np.random.Generator, params: list[torch.nn.Parameter]) -> None:
    for p in params:
        p.grad = torch.from_numpy(rng.standard_normal(tuple(p.shape))).to(p.dtype)


@entry("optim.Muon", fast_calls=40)
def muon(rng: np.random.Generator) -> Case:
    kwargs, valid, label = _muon_options(rng)
    shapes = [(size(rng, 1, 8), size(rng, 1, 8)) for _ in range(size(rng, 1, 3))]
    if chance(rng, 0.3):
        shapes.append(shapes[0])  # same-shape parameters are stacked
    if chance(rng, 0.2):
        shapes.append((size(rng, 1, 4), size(rng, 1, 3), 2, 2))  # a conv weight
    bad_param = chance(rng, 0.1)
    if bad_param:
        shapes.append((size(rng, 1, 5),))
        valid, label = _and(valid, False), f"{label}; a 1-D parameter"
    dtype = pick(rng, (torch.float32, torch.float64))
    seeds = rng.integers(0, 2**32, size=3)

    def session() -> None:
        local = np.random.default_rng(seeds[0])
        params = [
            torch.nn.Parameter(torch.from_numpy(local.standard_normal(s)).to(dtype)) for s in shapes
        ]
        opt = optim.Muon(params, **kwargs)
        for step in range(2):
            _grads_for(np.random.default_rng(seeds[1] + step), params)
            before = [p.detach().clone() for p in params]
            grads = [p.grad.clone() for p in params]
            buffers = [
                opt.state[p]["momentum_buffer"].clone() if p in opt.state else torch.zeros_like(p)
                for p in params
            ]
            opt.step()
            _check_muon_step(opt.param_groups[0], before, grads, buffers, params)
        state = opt.state_dict()
        again = optim.Muon([torch.nn.Parameter(p.detach().clone()) for p in params], **kwargs)
        again.load_state_dict(state)

    return Case(session, valid=valid, label=f"{label}; shapes {shapes}")


def _check_muon_step(
    group: dict[str, Any],
    before: list[Any],
    grads: list[Any],
    buffers: list[Any],
    params: list[Any],
) -> None:
    mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
    for b, g, buf, p in zip(before, grads, buffers, params, strict=True):
        buf = buf.lerp(g, 1 - mu)
        update = g.lerp(buf, mu) if group["nesterov"] else buf
        matrix = update.reshape(update.size(0), -1)
        orthogonal = optim.newton_schulz(matrix[None], steps=group["ns_steps"])[0]
        rows, cols = matrix.shape
        scale = {
            "original": math.sqrt(max(1.0, rows / cols)),
            "match_rms_adamw": 0.2 * math.sqrt(max(rows, cols)),
            "spectral_unclamped": math.sqrt(rows / cols),
        }[group["adjust_lr"]]
        expected = b * (1 - lr * wd) - lr * scale * orthogonal.view_as(b)
        tolerance = 1e-4 if p.dtype == torch.float32 else 1e-9
        if lr * max(scale, 1.0) * max(wd, 1.0) > 1e30:
            continue  # the step itself overflows: non-finite entries are its due
        close = torch.allclose(
            p.detach(), expected, rtol=tolerance, atol=tolerance * (1 + lr * scale)
        )
        expect(
            close,
            f"Muon step differs from the reference by {float((p.detach() - expected).abs().max())}",
        )


@entry("optim.DropMuon", fast_calls=30)
def drop_muon(rng: np.random.Generator) -> Case:
    kwargs, valid, label = _muon_options(rng)
    kwargs.setdefault("lr", 0.02)
    count = size(rng, 1, 4)
    sampler: Any = "uniform"
    s_label = "uniform"
    roll = int(rng.integers(8))
    if roll == 0:
        sampler, s_label = list(rng.random(count)), "weights"
    elif roll == 1:
        sampler, s_label = (lambda step: [0.0] * (count - 1) + [1.0]), "callable"
    elif roll == 2:
        sampler = pick(
            rng,
            (
                [1.0] * (count + 1),
                [-1.0] * count,
                [math.nan] * count,
                [0.0] * count,
                "last",
                None,
                5,
            ),
        )
        # A bare number is one weight: a fine distribution over a single layer.
        valid = _and(valid, None if sampler == 5 and count == 1 else False)
        s_label = f"bad sampler {sampler!r}"
    elif roll == 3:
        sampler, s_label = (lambda step: [math.nan] * count), "callable giving NaN"
    if chance(rng, 0.2):
        kwargs["adamw_betas"] = pick(rng, ((0.9, 1.0), (0.9,), "ab", (math.nan, 0.9), (0.8, 0.99)))
        valid = _and(valid, kwargs["adamw_betas"] == (0.8, 0.99))
        label += f"; betas {kwargs['adamw_betas']!r}"
    kwargs["sampler"] = sampler
    kwargs["seed"], s_ok, seed_label = integer(rng, 0, 2**64 - 1, typical=int(rng.integers(0, 100)))
    valid = _and(valid, s_ok)
    layer_kind = int(rng.integers(4))
    seeds = rng.integers(0, 2**32, size=4)

    def session() -> None:
        torch.manual_seed(int(seeds[0]))
        layers: list[Any] = [torch.nn.Linear(4, 4) for _ in range(count)]
        if layer_kind == 0:
            layers.append(torch.nn.ReLU())  # no parameters: refused
        elif layer_kind == 1 and count > 1:
            layers[1] = layers[0]  # a shared parameter: refused
        model = torch.nn.Sequential(*layers)
        opt = optim.DropMuon(layers, **kwargs)
        for step in range(3):
            start = opt.begin_step()
            expect(0 <= start < len(layers), f"start {start}")
            frozen = [[p.detach().clone() for p in layer.parameters()] for layer in layers[:start]]
            model(
                torch.from_numpy(
                    np.random.default_rng(seeds[1] + step).standard_normal((2, 4))
                ).float()
            ).sum().backward()
            opt.step()
            for layer, saved in zip(layers[:start], frozen, strict=True):
                for p, q in zip(layer.parameters(), saved, strict=True):
                    same = torch.equal(p.detach(), q) or bool(
                        torch.allclose(p.detach(), q, rtol=0, atol=0, equal_nan=True)
                    )
                    expect(same, "a layer below the start moved")
                    expect(p.requires_grad, "a layer stayed frozen after step")
            opt.zero_grad()
        state = opt.state_dict()
        opt.load_state_dict(state)

    shared = layer_kind == 1 and count > 1
    valid = _and(valid, not (layer_kind == 0 or shared))
    if s_label == "callable giving NaN":
        valid = _and(valid, False)
    return Case(
        session,
        valid=valid,
        label=f"{label}; {s_label}; seed {seed_label}; layers kind {layer_kind}",
    )


@entry("optim.AdaGradNorm", fast_calls=40)
def adagrad_norm(rng: np.random.Generator) -> Case:
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    labels = []
    for name, high, low_open in (
        ("lr", FLOAT32_MAX, True),
        ("initial_accumulator_value", math.inf, False),
        ("eps", math.inf, False),
        ("weight_decay", FLOAT32_MAX, False),
    ):
        if chance(rng, 0.35):
            kwargs[name], ok, label = real(rng, 0.0, high, low_open=low_open, typical=(0.0, 2.0))
            if ok and abs(float(kwargs[name])) > 1e100:
                ok = None  # the decayed gradient may overflow: refusing it is right too
            valid, labels = _and(valid, ok), [*labels, f"{name} {label}"]
    shapes = [
        tuple(size(rng, 1, 4) for _ in range(int(rng.integers(0, 3))))
        for _ in range(size(rng, 1, 3))
    ]
    nan_grad = chance(rng, 0.1)
    zero_grads = chance(rng, 0.1)
    seeds = rng.integers(0, 2**32, size=2)

    def session() -> None:
        local = np.random.default_rng(seeds[0])
        params = [
            torch.nn.Parameter(torch.from_numpy(np.asarray(local.standard_normal(s))))
            for s in shapes
        ]
        opt = optim.AdaGradNorm(params, **kwargs)
        group = opt.param_groups[0]
        total = float(group["initial_accumulator_value"])
        for step in range(3):
            grads = [
                torch.from_numpy(
                    np.asarray(np.random.default_rng(seeds[1] + step).standard_normal(s))
                )
                for s in shapes
            ]
            if zero_grads:
                grads = [torch.zeros_like(g) for g in grads]
            if nan_grad and step == 1:
                grads[0] = grads[0] * math.nan
            before = [p.detach().clone() for p in params]
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
            effective = [
                g + group["weight_decay"] * b if group["weight_decay"] else g
                for g, b in zip(grads, before, strict=True)
            ]
            total += sum(float(g.double().square().sum()) for g in effective)
            denominator = math.sqrt(total) + group["eps"]
            scale = group["lr"] / denominator if denominator > 0 else math.inf
            for p, b, g in zip(params, before, effective, strict=True):
                expected = b if math.isinf(scale) else b - (g.double() * scale).to(b.dtype)
                # torch may fuse p - scale * g (one rounding): tolerate a few ulps of the terms.
                size = b.abs() + (g.double() * scale).abs().to(b.dtype)
                gap = (p.detach() - expected).abs()
                same = bool(((gap <= 1e-12 * size) | (p.detach() == expected)).all())
                expect(same or bool(torch.isnan(p).any()), "AdaGrad-Norm step differs")

    if nan_grad:
        valid = _and(valid, False)
    return Case(
        session,
        valid=valid,
        label="; ".join(labels) + f"; shapes {shapes}; NaN {nan_grad}; zero {zero_grads}",
    )


@entry("optim.muon_param_groups", covers=("optim.MuonParamGroups",), fast_calls=40)
def muon_param_groups(rng: np.random.Generator) -> Case:
    parts: list[Any] = []
    for _ in range(size(rng, 1, 5)):
        kind = int(rng.integers(5))
        if kind == 0:
            parts.append(torch.nn.Embedding(5, 4))
        elif kind == 1:
            parts.append(torch.nn.Linear(4, 4, bias=chance(rng, 0.5)))
        elif kind == 2:
            parts.append(torch.nn.LayerNorm(4))
        elif kind == 3:
            parts.append(torch.nn.Conv1d(4, 4, 1))
        else:
            frozen = torch.nn.Linear(4, 4)
            frozen.weight.requires_grad_(False)
            parts.append(frozen)
    model: Any = torch.nn.Sequential(*parts)
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    label = f"{[type(p).__name__ for p in parts]}"
    if chance(rng, 0.2):
        kwargs["output_layer"] = parts[0] if chance(rng, 0.5) else torch.nn.Linear(2, 2)
        valid = _and(valid, kwargs["output_layer"] is parts[0])
        label += "; explicit output layer"
    for name, typical in (("lr", (1e-3, 0.1)), ("adamw_lr", (1e-4, 1e-2))):
        if chance(rng, 0.25):
            kwargs[name], ok, r_label = real(rng, 0.0, FLOAT32_MAX, low_open=True, typical=typical)
            valid, label = _and(valid, ok), f"{label}; {name} {r_label}"
    if chance(rng, 0.15):
        kwargs["adamw_betas"] = pick(rng, ((0.9, 1.0), (0.9,), "ab", (0.8, 0.99)))
        valid, label = (
            _and(valid, kwargs["adamw_betas"] == (0.8, 0.99)),
            f"{label}; betas {kwargs['adamw_betas']!r}",
        )
    if chance(rng, 0.1):
        model, valid, label = (
            pick(rng, (parts[0].weight, [parts[0]], None)),
            False,
            f"{label}; not a module",
        )
    if valid is not True:
        return Case(optim.muon_param_groups, (model,), kwargs, valid, label=label)

    def check(groups: Any) -> None:
        muon_params = [p for g in groups.muon for p in g["params"]]
        adamw_params = [p for g in groups.adamw for p in g["params"]]
        trainable = [p for p in model.parameters() if p.requires_grad]
        ids = [id(p) for p in muon_params + adamw_params]
        expect(
            sorted(ids) == sorted(id(p) for p in trainable),
            "groups do not partition the trainable parameters",
        )
        expect(all(p.ndim >= 2 for p in muon_params), "a parameter below 2-D went to Muon")
        if muon_params:
            optim.Muon(groups.muon)
        if adamw_params:
            torch.optim.AdamW(groups.adamw)

    return Case(optim.muon_param_groups, (model,), kwargs, True, check, label)


@entry("optim.start_distribution", fast_calls=60)
def start_distribution(rng: np.random.Generator) -> Case:
    layers = size(rng, 1, 8)
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    label = f"{layers} layers"
    for name in ("smoothness", "cost"):
        if chance(rng, 0.25):
            continue
        values: Any = list(np.exp(rng.uniform(-14.0, 14.0, size=layers)))
        if chance(rng, 0.1):
            values[int(rng.integers(layers))] = pick(
                rng, (0.0, -1.0, math.nan, math.inf, "1", True, 1 + 2j, None)
            )
            valid, label = False, f"{label}; a hostile {name} value"
        elif chance(rng, 0.05):
            values = [values]
            valid, label = False, f"{label}; {name} of the wrong shape"
        elif chance(rng, 0.2):
            values = pick(rng, (np.array(values), torch.tensor(values), tuple(values)))
        kwargs[name] = values
    if not kwargs:
        valid, label = False, f"{label}; neither list"
    if chance(rng, 0.3):
        kwargs["fixed_cost"], ok, r_label = real(rng, 0.0, math.inf, typical=(0.0, 10.0))
        valid, label = _and(valid, ok), f"{label}; fixed_cost {r_label}"
    if valid is not True:
        return Case(optim.start_distribution, (), kwargs, valid, label=label)

    def check(p: Any) -> None:
        expect(p.shape == (layers,), f"shape {p.shape} for {layers} layers")
        expect(bool(np.isfinite(p).all()) and bool((p >= 0).all()), f"not a distribution: {p}")
        expect(abs(math.fsum(p) - 1.0) < 1e-9, f"sums to {math.fsum(p)}")

    return Case(optim.start_distribution, (), kwargs, True, check, label)
