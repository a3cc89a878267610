"""diloco.compressors.LGreCo: per-layer levels against brute force, the payload format,
argument checks, and its binding in DiLoCo and the DDP hook (a world of one)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from thrifty import collective, diloco
from thrifty.diloco.compressors import BlockQuantizer, Compressor, LGreCo, RandomK, TopK
from thrifty.errors import InvalidArgumentError, ShapeError, ThriftyError

torch = pytest.importorskip("torch")


def candidates() -> list[Compressor]:
    return [
        TopK(0.1),
        TopK(0.5),
        BlockQuantizer("fp4", block=8),
        BlockQuantizer("int8", block=8),
    ]


def pseudo_gradient(seed: int) -> tuple[list[int], Any]:
    """The change of a tiny model's parameters over a few AdamW steps, flattened: layers of
    different sizes and very different statistics (weights against biases)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(5):
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(seed * 100 + step))
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return [int(p.numel()) for p in model.parameters()], before - after


def brute_force(errors: Any, sizes: Any, budget: float) -> float:
    """The least total size over every level vector whose summed error is within budget."""
    layers, count = errors.shape
    best = np.inf
    for levels in itertools.product(range(count), repeat=layers):
        picked = list(levels)
        if errors[range(layers), picked].sum() <= budget:
            best = min(best, sizes[range(layers), picked].sum())
    return float(best)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [1.0, 1.5, 3.0])
def test_the_levels_respect_the_budget_and_minimise_the_size(seed: int, budget: float) -> None:
    layers, x = pseudo_gradient(seed)
    c = LGreCo(candidates(), default=2, budget=budget, layers=layers)
    uniform_bytes = c.payload_bytes(x.numel())
    errors = c.measure(x)
    sizes = c.sizes()
    allowed = budget * errors[:, 2].sum()
    levels = c.choose(errors)
    rows = range(len(layers))
    assert errors[rows, levels].sum() <= allowed
    size = sizes[rows, levels].sum()
    # Optimal over all 4^4 choices; the DP rounds errors up to units of allowed / buckets,
    # so at worst it is optimal for a budget smaller by one unit per layer.
    units = 10_000
    assert brute_force(errors, sizes, allowed) <= size
    assert size <= brute_force(errors, sizes, allowed * (1 - len(layers) / units))
    assert size <= uniform_bytes  # never worse than the uniform default
    # The payload is what the table said, and so is the error the receivers see.
    assert c.payload_bytes(x.numel()) == size == c.encode(x, seed=0).numel()
    seen = float((c.compress(x, seed=0) - x).double().square().sum())
    assert seen == pytest.approx(float(errors[rows, levels].sum()), rel=1e-6)


def test_the_choice_is_the_brute_force_optimum_here() -> None:
    layers, x = pseudo_gradient(0)
    c = LGreCo(candidates(), default=2, layers=layers)
    errors, sizes = c.measure(x), c.sizes()
    levels = c.choose(errors)
    optimum = brute_force(errors, sizes, errors[:, 2].sum())
    assert sizes[range(len(layers)), levels].sum() == optimum
    assert levels.tolist() != [2] * len(layers)  # a real reallocation, not the uniform one


def test_a_budget_no_choice_meets_gives_the_least_error_levels() -> None:
    layers, x = pseudo_gradient(1)
    c = LGreCo(candidates(), default=0, budget=1e-9, layers=layers)
    errors = c.measure(x)
    assert c.choose(errors).tolist() == np.argmin(errors, axis=1).tolist()


def test_a_non_finite_table_keeps_the_levels() -> None:
    layers, x = pseudo_gradient(2)
    c = LGreCo(candidates(), default=2, layers=layers)
    chosen = c.choose(c.measure(x))
    bad = c.measure(x)
    bad[1, 0] = np.nan
    assert c.choose(bad).tolist() == chosen.tolist()
    x[3] = float("inf")
    assert np.isnan(c.measure(x)).any()
    # A NaN in the input still reaches the receivers, as with every compressor.
    assert not torch.isfinite(c.compress(x, seed=0)).all()


def test_layers_are_encoded_one_after_the_other_with_their_own_seeds() -> None:
    same = torch.arange(1.0, 9.0)
    x = torch.cat([same, same])
    c = LGreCo([RandomK(0.5), BlockQuantizer("int8")], default=0, layers=[8, 8])
    payload = c.encode(x, seed=5)
    assert payload.dtype == torch.uint8
    assert payload.numel() == c.payload_bytes(16) == 2 * RandomK(0.5).payload_bytes(8)
    y = c.decode(payload, 16, seed=5)
    assert torch.equal(y, c.compress(x, seed=5))
    # Equal layers, different draws: the second layer does not reuse the first one's seed.
    assert not torch.equal(y[:8] != 0, y[8:] != 0)
    c.set_levels([1, 0])
    mixed = c.compress(x, seed=5)
    assert torch.equal(mixed[:8], BlockQuantizer("int8").compress(same, seed=0))
    assert c.payload_bytes(16) == BlockQuantizer("int8").payload_bytes(8) + 16
    assert c.delta(16) == min(RandomK(0.5).delta(8), BlockQuantizer("int8").delta(8))


def test_for_layers_copies_the_settings_with_fresh_levels() -> None:
    c = LGreCo(candidates(), default=1, budget=2.0, every=3, buckets=500)
    bound = c.for_layers([4, 5])
    assert bound is not c
    assert bound.layers == (4, 5)
    assert bound.levels is not None
    assert bound.levels.tolist() == [1, 1]
    assert (bound.budget, bound.every, bound.buckets, bound.name) == (2.0, 3, 500, c.name)
    assert c.levels is None
    assert [i for i in range(7) if bound.due(i)] == [0, 3, 6]


def test_the_digest_tells_every_setting_apart_and_survives_for_layers() -> None:
    base = {"default": 1, "budget": 2.0, "every": 3, "buckets": 500, "layers": [4, 5]}
    digest = LGreCo(candidates(), **base).digest()
    assert LGreCo(candidates(), **base).digest() == digest  # settings, not identity
    assert LGreCo(candidates(), **base | {"layers": None}).for_layers([4, 5]).digest() == digest
    changed = [
        LGreCo(candidates()[:3], **base),
        LGreCo([*candidates()[:3], BlockQuantizer("int8", block=32)], **base),
        *(
            LGreCo(candidates(), **base | {key: value})
            for key, value in [
                ("default", 0),
                ("budget", 2.5),
                ("every", 4),
                ("buckets", None),
                ("layers", [5, 4]),
            ]
        ),
    ]
    assert len({c.digest() for c in changed} | {digest}) == len(changed) + 1
    for half in digest:  # 32 bits in a float64: exact through any float all-gather
        assert half == int(half)
        assert 0 <= half < 2**32


def test_check_digests_names_the_argument_and_the_ranks_that_differ() -> None:
    c = LGreCo(candidates(), default=1, layers=[4])
    other = LGreCo(candidates(), default=2, layers=[4])
    c.check_digests(np.array([c.digest()] * 3), "quantize")
    with pytest.raises(InvalidArgumentError) as caught:
        c.check_digests([c.digest(), other.digest(), c.digest(), other.digest()], "compressor")
    assert caught.value.argument == "compressor"
    assert "ranks [1, 3]" in str(caught.value)


def test_plan_sums_the_workers_tables_in_rank_order_and_chooses() -> None:
    rng = np.random.default_rng(3)
    layers = [64, 32, 16]
    tables = [
        LGreCo(candidates(), default=2, layers=layers).measure(
            torch.from_numpy(rng.standard_normal(sum(layers)).astype(np.float32))
        )
        for _ in range(3)
    ]
    planned = LGreCo(candidates(), default=2, layers=layers)
    chosen = LGreCo(candidates(), default=2, layers=layers)
    levels = planned.plan(np.stack([t.reshape(-1) for t in tables]))
    assert levels.tolist() == chosen.choose(tables[0] + tables[1] + tables[2]).tolist()
    assert planned.levels is not None
    assert planned.levels.tolist() == levels.tolist()
    with pytest.raises(ShapeError) as caught:
        planned.plan(np.zeros((3, 5)))
    assert caught.value.argument == "tables"


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: LGreCo([], default=0), "candidates"),
        (lambda: LGreCo(["topk"], default=0), "candidates"),
        (lambda: LGreCo(TopK(0.1), default=0), "candidates"),
        (lambda: LGreCo([LGreCo([TopK(0.1)], default=0)], default=0), "candidates"),
        (lambda: LGreCo([TopK(0.1)], default=1), "default"),
        (lambda: LGreCo([TopK(0.1)], default=-1), "default"),
        (lambda: LGreCo([TopK(0.1)], default=True), "default"),
        (lambda: LGreCo([TopK(0.1)], default=0, budget=0.0), "budget"),
        (lambda: LGreCo([TopK(0.1)], default=0, budget=float("nan")), "budget"),
        (lambda: LGreCo([TopK(0.1)], default=0, budget="1"), "budget"),
        (lambda: LGreCo([TopK(0.1)], default=0, every=0), "every"),
        (lambda: LGreCo([TopK(0.1)], default=0, every=2.0), "every"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[]), "layers"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[3, 0]), "layers"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[2.5]), "layers"),
        (lambda: LGreCo([TopK(0.1)], default=0, buckets=0), "buckets"),
        (lambda: LGreCo([TopK(0.1)], default=0).encode(torch.ones(3), seed=0), "layers"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[2]).payload_bytes(3), "numel"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[2]).choose(np.zeros((2, 1))), "errors"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[2]).choose(-np.ones((1, 1))), "errors"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[2]).set_levels([1]), "levels"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[2]).set_levels([0, 0]), "levels"),
        (lambda: LGreCo([TopK(0.1)], default=0, layers=[2]).set_levels([0.5]), "levels"),
    ],
)
def test_bad_arguments_are_named(make: Any, argument: str) -> None:
    with pytest.raises(ThriftyError) as caught:
        make()
    assert caught.value.argument == argument
    assert isinstance(caught.value, (InvalidArgumentError, ShapeError))


# --- in DiLoCo and the DDP hook, a world of one ----------------------------------------------


@pytest.fixture(scope="module")
def comm() -> Iterator[Any]:
    with (
        collective.Coordinator("127.0.0.1:0", secret="lgreco") as coordinator,
        collective.Communicator(
            coordinator.address, secret="lgreco", bind_host="127.0.0.1"
        ) as communicator,
    ):
        communicator.connect()
        communicator.update_topology()
        yield communicator


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Linear(16, 1)
    )


def _run(model: Any, inner: Any, outer: Any, steps: int) -> None:
    for step in range(steps):
        x = torch.randn(8, 8, generator=torch.Generator().manual_seed(step))
        inner.zero_grad()
        model(x).pow(2).mean().backward()
        inner.step()
        outer.step()


def formats() -> list[Compressor]:
    """fp4 with one scale per 64 values, or per 8 (the default), or int8 per 8."""
    return [
        BlockQuantizer("fp4", block=64),
        BlockQuantizer("fp4", block=8),
        BlockQuantizer("int8", block=8),
    ]


def test_diloco_binds_one_lgreco_per_fragment_and_checkpoints_the_levels(comm: Any) -> None:
    # Twice the default's error buys the coarser scales somewhere.
    template = LGreCo(formats(), default=1, budget=2.0, every=2)
    model = _model()
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    outer = diloco.DiLoCo(
        model, inner, transport=comm, sync_every=4, fragments=2, quantize=template
    )
    bound = outer._exchange.compressors
    assert [c.layers for c in bound] == [
        tuple(int(p.numel()) for p in fragment.params) for fragment in outer.fragments
    ]
    assert template.levels is None  # the original stays unbound
    _run(model, inner, outer, 12)
    state = outer.state_dict()
    assert state["levels"] == [c.levels.tolist() for c in bound]
    assert any(level != 1 for levels in state["levels"] for level in levels), state["levels"]
    assert all(f"f{f}.levels" in outer._shared_arrays([]) for f in range(2))
    # A fresh run restores them with the rest of the state.
    model2 = _model()
    inner2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    outer2 = diloco.DiLoCo(
        model2, inner2, transport=comm, sync_every=4, fragments=2, quantize=template
    )
    outer2.load_state_dict(state)
    assert [c.levels.tolist() for c in outer2._exchange.compressors] == state["levels"]
    outer.close()
    outer2.close()


def test_diloco_with_lgreco_inside_error_feedback(comm: Any) -> None:
    model = _model()
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    feedback = diloco.compressors.ErrorFeedback(LGreCo(candidates(), default=2, every=1))
    outer = diloco.DiLoCo(model, inner, transport=comm, sync_every=4, error_feedback=feedback)
    _run(model, inner, outer, 8)
    assert outer.stats.syncs == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    outer.close()


def test_the_ddp_hook_binds_one_lgreco_per_bucket() -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        plain = _model()
        model = torch.nn.parallel.DistributedDataParallel(_model())
        hook, state = diloco.ddp_comm_hook(LGreCo(formats(), default=1, budget=2.0, every=1))
        seen: list[list[Any]] = []

        def watching(hook_state: Any, bucket: Any) -> Any:
            seen.append(list(bucket.parameters()))
            return hook(hook_state, bucket)

        watching.__annotations__.update(hook.__annotations__)
        model.register_comm_hook(state, watching)
        for step in range(3):
            model.zero_grad()
            plain.zero_grad()
            x = torch.randn(8, 8, generator=torch.Generator().manual_seed(step))
            model(x).pow(2).mean().backward()
            plain(x).pow(2).mean().backward()
        (_, bound, count) = state._layerwise[0]
        assert count == [2]  # rebound once when DDP rebuilt its bucket, then two exchanges
        # In a world of one the gradients are the bucket compressed layer by layer, in the
        # bucket's order, with the levels chosen at this exchange.
        bucket = seen[-1]
        assert bound.layers == tuple(int(p.numel()) for p in bucket)
        twin = dict(zip(map(id, model.module.parameters()), plain.parameters(), strict=True))
        raw = torch.cat([twin[id(p)].grad.reshape(-1) for p in bucket])
        got = torch.cat([p.grad.reshape(-1) for p in bucket])
        assert torch.equal(got, bound.compress(raw, seed=0))
        assert bound.levels is not None
        assert bound.levels.tolist() != [1] * len(bucket)
        # Each exchange also sent its table: 6 layers x 3 candidates of float64.
        assert state.bytes_sent > 3 * 6 * 3 * 8
    finally:
        dist.destroy_process_group()
