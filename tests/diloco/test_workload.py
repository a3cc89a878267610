"""The shared DiLoCo workload: corpus shards, the entropy floor, TinyLM and the DDP baseline."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benches.workloads import diloco_language_model as workload  # noqa: E402
from thrifty.errors import InvalidArgumentError  # noqa: E402

SMALL = workload.WorkloadConfig(batch_size=4, seq_len=16)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # The machine is shared; one thread is also what the workload was tuned on.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def take(stream: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int) -> list[torch.Tensor]:
    return [next(stream)[0] for _ in range(count)]


def test_the_corpus_is_deterministic_from_its_seed() -> None:
    a = workload.MarkovCorpus(32, branching=3, support=6, seed=3)
    b = workload.MarkovCorpus(32, branching=3, support=6, seed=3)
    c = workload.MarkovCorpus(32, branching=3, support=6, seed=4)
    assert np.array_equal(a.transitions, b.transitions)
    assert not np.array_equal(a.transitions, c.transitions)
    assert np.allclose(a.transitions.sum(axis=-1), 1.0)
    assert ((a.transitions > 0).sum(axis=-1) == 3).all()
    # Each token's successors, over all contexts that end with it, are `support` tokens.
    assert ((a.transitions > 0).any(axis=0).sum(axis=-1) <= 6).all()


def test_streams_are_deterministic_from_the_seed_and_resume_at_any_step() -> None:
    first = take(workload.batches(1, 4, config=SMALL), 3)
    again = take(workload.batches(1, 4, config=SMALL), 3)
    other = take(workload.batches(1, 4, config=workload.WorkloadConfig(seed=1, batch_size=4)), 3)
    resumed = take(workload.batches(1, 4, config=SMALL, start_step=2), 1)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not any(torch.equal(x[:, :16], y[:, :16]) for x, y in zip(first, other, strict=True))
    assert torch.equal(resumed[0], first[2])
    assert not torch.equal(first[0], first[1])


def test_targets_are_the_inputs_shifted_by_one() -> None:
    inputs, targets = next(workload.batches(0, 2, config=SMALL))
    assert inputs.shape == targets.shape == (4, 16)
    assert inputs.dtype == targets.dtype == torch.int64
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert int(inputs.min()) >= 0
    assert int(inputs.max()) < SMALL.vocab


@pytest.mark.parametrize("heterogeneity", [0.0, 0.7])
def test_the_union_of_the_shards_is_the_global_batch(heterogeneity: float) -> None:
    world = 4
    streams = [
        workload.batches(w, world, config=SMALL, heterogeneity=heterogeneity) for w in range(world)
    ]
    global_stream = workload.global_batches(world, config=SMALL, heterogeneity=heterogeneity)
    for step in range(3):
        parts = [next(stream) for stream in streams]
        union = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        direct = workload.global_batch(step, world, config=SMALL, heterogeneity=heterogeneity)
        streamed = next(global_stream)
        assert union[0].shape == (world * SMALL.batch_size, SMALL.seq_len)
        for got in (direct, streamed):
            assert torch.equal(got[0], union[0])
            assert torch.equal(got[1], union[1])
    # Without heterogeneity, a DDP run of one worker with the global batch size sees the
    # same tokens as the union of four workers' batches.
    if heterogeneity == 0.0:
        wide = workload.WorkloadConfig(batch_size=world * SMALL.batch_size, seq_len=16)
        assert torch.equal(
            workload.global_batch(0, world, config=SMALL)[0],
            workload.global_batch(0, 1, config=wide)[0],
        )


def own_fraction(targets: torch.Tensor, worker: int, world: int) -> float:
    return float((targets % world == worker).double().mean())


def test_heterogeneity_skews_each_worker_towards_its_own_tokens() -> None:
    world = 4
    chain = workload.corpus(SMALL)
    own = np.arange(chain.vocab) % world == 2
    fractions, expected = {}, {}
    for heterogeneity in (0.0, 1.0):
        stream = workload.batches(2, world, config=SMALL, heterogeneity=heterogeneity)
        targets = torch.cat([next(stream)[1] for _ in range(50)])
        fractions[heterogeneity] = own_fraction(targets, 2, world)
        law = chain.stationary(worker=2, world_size=world, heterogeneity=heterogeneity)
        expected[heterogeneity] = float(law.sum(axis=0)[own].sum())
    assert fractions[1.0] > fractions[0.0] + 0.1
    for heterogeneity, fraction in fractions.items():
        assert abs(fraction - expected[heterogeneity]) < 0.06
    # The workers' laws differ from each other at h > 0, and not at h = 0; the support of
    # the chain is kept, so every shard still visits every context.
    same = [chain.stationary(worker=w, world_size=world, heterogeneity=0.0) for w in range(2)]
    skewed = [chain.stationary(worker=w, world_size=world, heterogeneity=1.0) for w in range(2)]
    assert np.array_equal(same[0], same[1])
    assert 0.5 * np.abs(skewed[0].sum(1) - skewed[1].sum(1)).sum() > 0.2
    assert np.array_equal(skewed[0] > 0, same[0] > 0)


def test_the_entropy_floor_matches_the_empirical_loss_of_the_true_chain() -> None:
    chain = workload.corpus()
    rng = np.random.default_rng(0)
    tokens = chain.sample(rng.random((2000, 32))).numpy()
    transitions, pairs = chain.transitions, chain.stationary()
    first = pairs[tokens[:, 0], tokens[:, 1]] / pairs.sum(axis=1)[tokens[:, 0]]
    rest = transitions[tokens[:, :-2], tokens[:, 1:-1], tokens[:, 2:]]
    assert (rest > 0).all()
    empirical = -(np.log(first).sum() + np.log(rest).sum()) / (tokens.shape[0] * 32)
    floor = chain.entropy_floor(32)
    assert abs(empirical - floor) < 0.02
    assert floor < np.log(chain.support) < np.log(chain.vocab)
    # The sampled first pairs follow the stationary law (a chi-square-free coarse check:
    # the marginal of the first token).
    counts = np.bincount(tokens[:, 0], minlength=chain.vocab) / tokens.shape[0]
    assert np.abs(counts - pairs.sum(axis=1)).max() < 0.03


def test_tinylm_shapes_and_deterministic_initialisation() -> None:
    model = workload.make_model(SMALL)
    assert isinstance(model.blocks, torch.nn.ModuleList)
    assert len(model.blocks) == SMALL.n_layers
    logits = model(torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape == (2, 5, SMALL.vocab)
    state = torch.get_rng_state()
    twin, other = workload.make_model(SMALL), workload.make_model(SMALL, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    pairs = list(zip(model.parameters(), twin.parameters(), strict=True))
    assert all(torch.equal(p, q) for p, q in pairs)
    assert not all(
        torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters(), strict=True)
    )
    tied = workload.TinyLM(32, 32, 1, 2, 8, tied=True)
    untied = workload.TinyLM(32, 32, 1, 2, 8, tied=False)
    assert tied.head.weight is tied.token_embedding.weight
    count = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert count == 32 * 32


def test_tinylm_is_causal() -> None:
    model = workload.make_model(SMALL).eval()
    inputs = torch.randint(
        0, SMALL.vocab, (3, SMALL.seq_len), generator=torch.Generator().manual_seed(0)
    )
    changed = inputs.clone()
    cut = 7
    changed[:, cut + 1 :] = (changed[:, cut + 1 :] + 5) % SMALL.vocab
    with torch.no_grad():
        before, after = model(inputs), model(changed)
    assert torch.allclose(before[:, : cut + 1], after[:, : cut + 1], atol=1e-6)
    assert not torch.allclose(before[:, cut + 1 :], after[:, cut + 1 :])


def test_tinylm_rejects_inputs_longer_than_its_positions() -> None:
    model = workload.make_model(SMALL)
    with pytest.raises(InvalidArgumentError) as caught:
        model(torch.zeros(1, SMALL.seq_len + 1, dtype=torch.long))
    assert caught.value.argument == "inputs"


def test_arguments_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="worker") as caught:
        workload.batches(4, 4)
    assert caught.value.argument == "worker"
    with pytest.raises(InvalidArgumentError) as caught:
        workload.batches(0, 4, heterogeneity=1.5)
    assert caught.value.argument == "heterogeneity"
    with pytest.raises(InvalidArgumentError) as caught:
        workload.WorkloadConfig(d_model=30, n_heads=4)
    assert caught.value.argument == "d_model"
    with pytest.raises(InvalidArgumentError) as caught:
        workload.make_inner_optimizer(workload.make_model(SMALL), lr=-1.0)
    assert caught.value.argument == "lr"
    with pytest.raises(InvalidArgumentError) as caught:
        workload.ddp_baseline(world_size=0)
    assert caught.value.argument == "world_size"


def test_ring_all_reduce_bytes() -> None:
    assert workload.ring_all_reduce_bytes(100, 1) == 0.0
    assert workload.ring_all_reduce_bytes(100, 4) == 2 * 3 / 4 * 4 * 100


@pytest.mark.timeout(60)
def test_the_baseline_learns_towards_the_entropy_floor() -> None:
    config = workload.WorkloadConfig(steps=120)
    result = workload.ddp_baseline(world_size=4, config=config, eval_every=40)
    initial = np.log(config.vocab)
    floor = result.entropy_floor
    assert floor is not None
    assert result.references == {"entropy floor": floor}
    assert abs(result.train_losses[0] - initial) < 0.2
    # More than half the way from uniform to the floor, never (noticeably) below the floor.
    assert result.eval_loss < floor + 0.5 * (initial - floor)
    assert result.eval_loss > floor - 0.05
    losses = list(result.eval_losses.values())
    assert losses == sorted(losses, reverse=True)
    assert result.bytes_sent == 120 * result.bytes_per_step
    assert result.bytes_per_step == 2 * 3 / 4 * 4 * result.n_params
