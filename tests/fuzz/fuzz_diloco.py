"""Fuzz entries of thrifty.diloco and its compressors: construction, a few steps, payloads."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from fuzz_collective import world_of_one
from fuzz_core import Case, Mismatch, entry, expect
from fuzz_values import chance, choice, flag, integer, pick, real, seed, size

import thrifty
from thrifty import diloco
from thrifty.diloco import compressors

FORMATS = ("int8", "fp8", "fp4")


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _compressor(rng: np.random.Generator) -> tuple[Any, bool | None, str]:
    """A compressor built from fuzzed arguments (or the arguments' error, deferred)."""
    roll = int(rng.integers(4))
    if roll == 0:
        fraction, ok, label = real(rng, 0.0, 1.0, low_open=True, typical=(0.01, 1.0))
        return (lambda: compressors.TopK(fraction)), ok, f"TopK({label})"
    if roll == 1:
        fraction, ok, label = real(rng, 0.0, 1.0, low_open=True, typical=(0.01, 1.0))
        return (lambda: compressors.RandomK(fraction)), ok, f"RandomK({label})"
    if roll == 2:
        fmt, ok_f, label_f = choice(rng, FORMATS)
        block, ok_b, label_b = integer(rng, 1, None, typical=int(pick(rng, (1, 7, 8, 64, 65))))
        return (
            (lambda: compressors.BlockQuantizer(fmt, block=block)),
            _and(ok_f, ok_b),
            f"BlockQuantizer({label_f}, {label_b})",
        )
    layers = [size(rng, 1, 40) for _ in range(size(rng, 1, 3))]
    candidates = [
        compressors.TopK(0.25),
        compressors.BlockQuantizer("fp4", block=8),
        compressors.BlockQuantizer("int8"),
    ]
    default, ok_d, label_d = integer(rng, 0, len(candidates) - 1, typical=1)
    budget, ok_b, label_b = real(rng, 0.0, math.inf, low_open=True, typical=(0.5, 2.0))
    every, ok_e, label_e = integer(rng, 1, None, typical=2)
    ok_d = (
        ok_d
        if isinstance(default, int) and not isinstance(default, bool)
        else (False if ok_d is not True else None)
    )
    return (
        (
            lambda: compressors.LGreCo(
                candidates, default=default, budget=budget, every=every, layers=layers
            )
        ),
        _and(ok_d, ok_b, ok_e),
        f"LGreCo(layers {layers}, default {label_d}, budget {label_b}, every {label_e})",
    )


def _vector(rng: np.random.Generator, numel: int) -> torch.Tensor:
    x = rng.standard_normal(numel) * pick(rng, (1.0, 1e-30, 1e30, 1e-42))
    if chance(rng, 0.2) and numel:
        x[rng.random(numel) < 0.5] = 0.0
    return torch.from_numpy(x).float()


@entry(
    "diloco.compressors.Compressor",
    covers=(
        "diloco.compressors.TopK",
        "diloco.compressors.RandomK",
        "diloco.compressors.BlockQuantizer",
        "diloco.compressors.LGreCo",
    ),
    fast_calls=80,
    weight=2.0,
)
def compressor(rng: np.random.Generator) -> Case:
    make, valid, label = _compressor(rng)
    hostile = chance(rng, 0.15)
    if chance(rng, 0.9):
        seed_value: Any = int(rng.integers(0, 2**63))
        seeds_ok: bool | None = True
    else:
        seed_value, seeds_ok, _ = seed(rng)
    numel_override = size(rng, 0, 300, (1, 63, 64, 65, 127, 128, 129))

    def session() -> None:
        c = make()
        numel = sum(c.layers) if isinstance(c, compressors.LGreCo) else numel_override
        x = _vector(np.random.default_rng(numel), numel)
        if chance(np.random.default_rng(numel + 1), 0.1) and numel:
            x[0] = math.nan
        payload = c.encode(x, seed=seed_value)
        expect(payload.dtype == torch.uint8 and payload.dim() == 1, "payload type")
        expect(
            (payload.numel() == c.payload_bytes(numel) and payload.numel() % 4 == 0)
            or isinstance(c, compressors.LGreCo),
            f"payload of {payload.numel()} bytes, promised {c.payload_bytes(numel)}",
        )
        out = c.decode(payload, numel, seed=seed_value)
        expect(out.shape == x.shape and out.dtype == torch.float32, "decoded shape")
        again = c.compress(x, seed=seed_value)
        expect(
            torch.equal(out.nan_to_num(7.0), again.nan_to_num(7.0)),
            "compress is not decode(encode)",
        )
        finite = bool(torch.isfinite(x).all())
        if not finite:
            expect(
                not bool(torch.isfinite(out).all())
                or (not bool(out.any()) and isinstance(c, compressors.TopK) is False),
                "a NaN input decoded to finite values",
            )
            return
        expect(bool(torch.isfinite(out).all()), "finite input decoded to non-finite values")
        error = float((out.double() - x.double()).square().sum())
        norm = float(x.double().square().sum())
        delta = c.delta(numel)
        # Up to float32 rounding (relative 2**-24 per value), and in expectation for RandomK.
        bound = (1 - delta) * norm * (1 + 1e-5) + 1e-6 * norm + 1e-30
        expect(
            error <= bound or isinstance(c, compressors.RandomK),
            f"error {error} above (1 - delta) ||x||^2 = {(1 - delta) * norm}",
        )
        if isinstance(c, compressors.TopK) and numel:
            kept = int((out != 0).sum())
            expect(kept <= c.payload_bytes(numel) // 8, "TopK kept more than k")
        if hostile:
            _hostile_decode(np.random.default_rng(numel + 2), c, payload, numel)

    return Case(
        session,
        valid=_and(valid, seeds_ok),
        label=f"{label}; seed {seed_value!r}; hostile {hostile}",
    )


def _hostile_decode(rng: np.random.Generator, c: Any, payload: torch.Tensor, numel: int) -> None:
    garbage = payload.clone()
    if garbage.numel():
        garbage[: min(8, garbage.numel())] = 0xFF
    calls = [
        lambda: c.decode(
            payload[:-1] if payload.numel() else torch.zeros(1, dtype=torch.uint8), numel, seed=0
        ),
        lambda: c.decode(payload.float(), numel, seed=0),
        lambda: c.decode(payload.numpy(), numel, seed=0),
        lambda: c.decode(payload, -1, seed=0),
        lambda: c.decode(payload, numel, seed="0"),
        lambda: c.encode(torch.ones(3, dtype=torch.float64), seed=0),
        lambda: c.encode(torch.ones(2, 2), seed=0),
        lambda: c.payload_bytes(-1),
        lambda: c.delta("x"),
    ]
    chosen = int(rng.integers(len(calls)))
    try:
        calls[chosen]()
    except thrifty.ThriftyError as error:
        expect(not isinstance(error, thrifty.InternalError), f"InternalError: {error}")
    else:
        # A garbage payload of the right size may decode to garbage; a wrong one may not.
        raise Mismatch(f"hostile compressor call {chosen} was accepted")
    del garbage


@entry("diloco.compressors.decode_garbage", covers=(), fast_calls=40)
def decode_garbage(rng: np.random.Generator) -> Case:
    """A payload of the right size and dtype but random bytes: a result or a named error."""
    make, valid, label = _compressor(rng)
    numel = size(rng, 0, 200)

    def session() -> None:
        c = make()
        n = sum(c.layers) if isinstance(c, compressors.LGreCo) else numel
        payload = torch.from_numpy(
            np.random.default_rng(n).integers(0, 256, c.payload_bytes(n), dtype=np.uint8)
        )
        out = c.decode(payload, n, seed=1)
        expect(out.shape == (n,) and out.dtype == torch.float32, "decoded shape")

    return Case(session, valid=None if valid is not False else False, label=label)


@entry(
    "diloco.compressors.ErrorFeedback",
    covers=("diloco.compressors.EControl", "diloco.compressors.Feedback"),
    fast_calls=40,
)
def feedback(rng: np.random.Generator) -> Case:
    make, valid, label = _compressor(rng)
    control = chance(rng, 0.5)
    eta, eta_ok, eta_label = real(rng, 0.0, math.inf, low_open=True, typical=(0.01, 0.5))
    bad_compressor = chance(rng, 0.05)
    if control:
        valid, label = _and(valid, eta_ok), f"EControl({label}, eta {eta_label})"
    if bad_compressor:
        valid, label = False, f"{label}; not a compressor"
    rounds = size(rng, 1, 4)
    nan_round = int(rng.integers(rounds)) if chance(rng, 0.2) else -1

    def session() -> None:
        c = "topk" if bad_compressor else make()
        fb = compressors.EControl(c, eta) if control else compressors.ErrorFeedback(c)
        numel = sum(c.layers) if isinstance(c, compressors.LGreCo) else 50
        state = fb.init_state(numel, "cpu")
        for r in range(rounds):
            g = _vector(np.random.default_rng(r), numel)
            if r == nan_round:
                g[0] = math.nan
            before = {k: v.clone() for k, v in state.items()}
            v = fb.outgoing(g, state)
            sent = fb.compressor.compress(v, seed=r)
            estimate = fb.commit(g, state, sent, sent)
            expect(estimate.shape == g.shape, "estimate shape")
            if r == nan_round:
                expect(
                    all(torch.equal(state[k], before[k]) for k in state),
                    "a NaN round changed the state",
                )
                expect(
                    not bool(torch.isfinite(estimate).all()), "a NaN round gave a finite estimate"
                )
        try:
            fb.outgoing(torch.ones(numel + 1), state)
        except thrifty.ShapeError:
            pass
        else:
            raise Mismatch("outgoing accepted a vector of the wrong length")

    return Case(session, valid=valid, label=label)


def _model(rng: np.random.Generator) -> torch.nn.Module:
    torch.manual_seed(int(rng.integers(0, 2**31)))
    width = size(rng, 1, 6)
    return torch.nn.Sequential(
        torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
    )


def _train(model: torch.nn.Module, inner: Any, outer: Any, steps: int, seed: int) -> None:
    local = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        inner.zero_grad()
        x = torch.randn(4, 3, generator=local)
        model(x).square().mean().backward()
        inner.step()
        outer.step()


@entry(
    "diloco.DiLoCo",
    covers=("diloco.CommStats", "diloco.SyncRecord", "diloco.Fragment"),
    fast_calls=12,
    weight=0.1,
)
def diloco_entry(rng: np.random.Generator) -> Case:
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    labels = []
    sync_every, ok, label = integer(rng, 1, None, typical=int(rng.integers(1, 5)))
    if ok is not False and isinstance(sync_every, (int, np.integer)) and int(sync_every) > 20:
        sync_every, ok, label = 3, True, "int 3"
    kwargs["sync_every"], valid, labels = sync_every, ok, [f"sync_every {label}"]
    specs = {
        "outer_lr": lambda: real(rng, 0.0, 3.4e38, low_open=True, typical=(0.1, 1.0)),
        "outer_momentum": lambda: real(rng, 0.0, 1.0, high_open=True, typical=(0.0, 0.95)),
        "nesterov": lambda: flag(rng),
        "mix": lambda: real(rng, 0.0, 1.0, typical=(0.0, 1.0)),
        "fragment_pattern": lambda: choice(rng, ("strided", "sequential")),
        "fragments": lambda: integer(rng, 1, 3, typical=1),
        "overlap_steps": lambda: integer(rng, 0, 1, typical=0),
        "quantize": lambda: choice(rng, ("int8", "fp8", "fp4")),
    }
    for name, draw in specs.items():
        if chance(rng, 0.3):
            kwargs[name], ok, label = draw()
            if name == "nesterov" and not isinstance(kwargs[name], bool):
                ok = False
            if name == "quantize" and kwargs[name] is None:
                ok = True  # None is the default: fp32
            if name == "fragments" and ok:
                ok = None  # more fragments than the model has units is refused by name
            valid, labels = _and(valid, ok), [*labels, f"{name} {label}"]
    sync = kwargs["sync_every"]
    if (
        "overlap_steps" in kwargs
        and valid is not False
        and int(kwargs["overlap_steps"]) >= int(sync)
    ):
        valid = False
    if chance(rng, 0.2) and "quantize" not in kwargs:
        make, ok, label = _compressor(rng)
        kwargs["quantize"] = make
        valid, labels = _and(valid, ok, None), [*labels, f"compressor {label}"]
    if chance(rng, 0.1):
        bad = pick(rng, ("model", "optimizer", "transport"))
        valid, labels = False, [*labels, f"bad {bad}"]
    else:
        bad = ""
    seed = int(rng.integers(0, 2**31))
    steps = size(rng, 1, 8)

    def session() -> None:
        local = np.random.default_rng(seed)
        model = _model(local)
        inner = torch.optim.SGD(model.parameters(), lr=0.01)
        options = dict(kwargs)
        if callable(options.get("quantize")):
            options["quantize"] = options["quantize"]()
        with world_of_one() as comm:
            outer = diloco.DiLoCo(
                "model" if bad == "model" else model,
                "optimizer" if bad == "optimizer" else inner,
                transport=object() if bad == "transport" else comm,
                **options,
            )
            huge = float(options.get("outer_lr", 0.7)) > 1e30
            try:
                try:
                    _train(model, inner, outer, steps, seed)
                except thrifty.NonFiniteError:
                    # A huge outer step overflows the parameters; the next quantized sync
                    # then refuses them by name, which is the documented answer.
                    if huge and options.get("quantize") is not None:
                        return
                    raise
                expect(outer.inner_steps == steps, f"inner_steps {outer.inner_steps}")
                for p in model.parameters():
                    expect(huge or bool(torch.isfinite(p).all()), "a parameter went non-finite")
                state = outer.state_dict()
                outer.load_state_dict(state)
                stats = diloco.CommStats.from_dict(outer.stats.as_dict())
                expect(stats == outer.stats, "CommStats did not round-trip")
            finally:
                outer.close()

    return Case(session, valid=valid, label="; ".join(labels) + f"; {steps} steps")


@entry("diloco.NoLoCo", fast_calls=10, weight=0.1)
def noloco(rng: np.random.Generator) -> Case:
    kwargs: dict[str, Any] = {}
    sync_every, ok_s, label_s = integer(rng, 1, None, typical=int(rng.integers(1, 4)))
    if ok_s is not False and isinstance(sync_every, (int, np.integer)) and int(sync_every) > 20:
        sync_every, ok_s = 2, True
    lr, ok_l, label_l = real(rng, 0.0, 3.4e38, low_open=True, typical=(0.1, 1.0))
    beta, ok_b, label_b = real(rng, 0.0, 1.0, high_open=True, typical=(0.0, 0.9))
    group, ok_g, label_g = integer(rng, 2, None, typical=2)
    kwargs.update(sync_every=sync_every, outer_lr=lr, beta=beta, group_size=group)
    valid = _and(ok_s, ok_l, ok_b, ok_g)
    seed = int(rng.integers(0, 2**31))
    steps = size(rng, 1, 6)

    def session() -> None:
        model = _model(np.random.default_rng(seed))
        inner = torch.optim.SGD(model.parameters(), lr=0.01)
        with world_of_one() as comm:
            outer = diloco.NoLoCo(model, inner, transport=comm, **kwargs)
            try:
                _train(model, inner, outer, steps, seed)
                expect(outer.inner_steps == steps, "inner_steps")
                huge = float(kwargs["outer_lr"]) > 1e30  # a step this large may overflow
                for p in model.parameters():
                    expect(huge or bool(torch.isfinite(p).all()), "a parameter went non-finite")
                outer.load_state_dict(outer.state_dict())
            finally:
                outer.close()

    return Case(
        session,
        valid=valid,
        label=f"sync_every {label_s}; lr {label_l}; beta {label_b}; group {label_g}",
    )


@entry("diloco.SharedSeedSPSA", covers=("diloco.SPSAStepReport",), fast_calls=10, weight=0.1)
def shared_seed_spsa(rng: np.random.Generator) -> Case:
    kwargs: dict[str, Any] = {}
    valid: bool | None = True
    labels = []
    specs = {
        "eps": lambda: real(rng, 0.0, math.inf, low_open=True, typical=(1e-4, 1e-2)),
        "lr": lambda: real(rng, 0.0, math.inf, low_open=True, typical=(1e-3, 0.1)),
        "seed": lambda: integer(rng, 0, 2**64 - 1, typical=int(rng.integers(0, 100))),
        "samples": lambda: integer(rng, 1, 64, typical=2),
        "initial_scale": lambda: real(rng, 0.0, math.inf, low_open=True, typical=(0.1, 2.0)),
        "worker_id": lambda: integer(
            rng, 0, 2**64 - 1, typical=int(rng.integers(0, 100)), optional=True
        ),
    }
    kwargs["lr"] = 0.01
    for name, draw in specs.items():
        if chance(rng, 0.35):
            kwargs[name], ok, label = draw()
            valid, labels = _and(valid, ok), [*labels, f"{name} {label}"]
    for name in ("eps", "lr", "initial_scale"):
        value = kwargs.get(name)
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and not 1e-12 <= abs(value) <= 1e6
        ):
            valid = _and(valid, None)  # the loss may overflow: NonFiniteError is documented
    loss_kind = int(rng.integers(6))
    if loss_kind == 0:
        loss_fn: Any = lambda model, batch: model(batch).square().mean() * math.nan  # noqa: E731
        labels.append("NaN loss")
        valid = _and(valid, False)
    elif loss_kind == 1:
        loss_fn = lambda model, batch: model(batch)  # noqa: E731 (not a scalar)
        labels.append("vector loss")
        valid = _and(valid, False)
    else:
        loss_fn = lambda model, batch: model(batch).square().mean()  # noqa: E731
    seed = int(rng.integers(0, 2**31))

    def session() -> None:
        model = _model(np.random.default_rng(seed))
        with world_of_one() as comm:
            spsa = diloco.SharedSeedSPSA(model, loss_fn, transport=comm, **kwargs)
            for step in range(3):
                before = [p.detach().clone() for p in model.parameters()]
                try:
                    report = spsa.step(torch.ones(4, 3) * step)
                except thrifty.ThriftyError:
                    for p, b in zip(model.parameters(), before, strict=True):
                        same = torch.allclose(p.detach(), b, rtol=0, atol=0, equal_nan=True)
                        expect(same, "a refused step changed the weights")
                    raise
                expect(report.step == step and report.world_size == 1, f"report {report}")
                expect(math.isfinite(report.loss), "loss")
            state = spsa.state_dict()
            spsa.load_state_dict(state)

    return Case(session, valid=valid, label="; ".join(labels))


@entry("diloco.ddp_comm_hook", fast_calls=30)
def ddp_comm_hook(rng: np.random.Generator) -> Case:
    make, valid, label = _compressor(rng)
    wrap = int(rng.integers(3))
    seed_value, s_ok, s_label = seed(rng)
    bad = chance(rng, 0.1)

    def build() -> Any:
        c = make()
        if bad:
            return "topk"
        if wrap == 1:
            return compressors.ErrorFeedback(c)
        if wrap == 2:
            return compressors.EControl(c, eta=0.1)
        return c

    def session() -> None:
        hook, state = diloco.ddp_comm_hook(build(), seed=seed_value)
        expect(callable(hook) and state.iteration == 0 and state.bytes_sent == 0, "hook state")

    return Case(
        session,
        valid=_and(valid, s_ok, not bad),
        label=f"{label}; wrap {wrap}; seed {s_label}",
    )


@entry("diloco.CommStats.from_dict", fast_calls=30)
def comm_stats_from_dict(rng: np.random.Generator) -> Case:
    data: Any = {
        "bytes_sent": 10,
        "syncs": 1,
        "peak_bytes_per_sync": 10,
        "comm_wait_s": 0.5,
        "history": [],
    }
    labels = []
    for key in list(data):
        if chance(rng, 0.15):
            data[key] = pick(rng, ("x", None, [1], -1, 2**70, math.nan))
            labels.append(f"{key}={data[key]!r}")
        elif chance(rng, 0.05):
            del data[key]
            labels.append(f"no {key}")
    if chance(rng, 0.2):
        data["history"] = [
            pick(
                rng,
                (
                    {"step": 1},
                    {},
                    "x",
                    None,
                    {
                        "step": 1,
                        "fragment": 0,
                        "bytes_sent": 1,
                        "seconds": 0.1,
                        "wait_s": 0.0,
                        "world_size": 1,
                        "contributors": 1,
                        "retries": 0,
                    },
                ),
            )
        ]
        labels.append(f"history {data['history']!r}")
    if chance(rng, 0.05):
        data = pick(rng, (None, [], "x"))
        labels.append(f"data {data!r}")
    return Case(
        diloco.CommStats.from_dict,
        (data,),
        valid=None if labels else True,
        label="; ".join(labels) or "round trip",
    )
