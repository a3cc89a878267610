"""RS2Sampler, ImportanceSampler and last_layer_gradient_norms."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import thrifty
from thrifty import _native, coreset

torch = pytest.importorskip("torch")

P_VALUE = 1e-4
SIGMAS = 5.0


def stream(sampler: coreset.RS2Sampler, epochs: int) -> np.ndarray:
    return np.concatenate([sampler.epoch_slice(e) for e in range(epochs)])


def assert_passes_are_permutations(items: np.ndarray, n: int) -> None:
    full = len(items) // n
    assert full >= 1
    for j in range(full):
        assert sorted(items[j * n : (j + 1) * n].tolist()) == list(range(n))


def test_rs2_every_pass_holds_every_index_once() -> None:
    # L = 3 does not divide n = 10: epochs 3, 6 and 9 straddle a reshuffle.
    sampler = coreset.RS2Sampler(10, 0.3, seed=4)
    assert sampler.slice_length == 3
    items = stream(sampler, 20)
    assert_passes_are_permutations(items, 10)
    # No epoch repeats an index, not even one that straddles two passes.
    assert all(len(set(items[i : i + 3].tolist())) == 3 for i in range(0, 60, 3))
    # Each pass is a fresh permutation, not the same one again.
    assert not np.array_equal(items[:10], items[10:20])
    # What one epoch iterates is its slice of the stream.
    sampler.set_epoch(3)
    assert list(sampler) == items[9:12].tolist()


def test_rs2_shards_are_disjoint_and_cover_the_slice() -> None:
    n, replicas = 23, 4
    shards = [
        coreset.RS2Sampler(n, 0.2, seed=1, num_replicas=replicas, rank=r) for r in range(replicas)
    ]
    # ceil(0.2 * 23) = 5 rounds up to 8: two items per rank, no padding.
    assert [len(s) for s in shards] == [2] * replicas
    items = []
    for epoch in range(12):
        for s in shards:
            s.set_epoch(epoch)
        parts = [list(s) for s in shards]
        flat = [i for part in parts for i in part]
        assert len(set(flat)) == len(flat)
        whole = shards[0].epoch_slice()
        assert sorted(flat) == sorted(whole.tolist())
        assert parts[1] == whole[1::replicas].tolist()
        items.append(whole)
    assert_passes_are_permutations(np.concatenate(items), n)


def test_rs2_drop_last_rounds_down() -> None:
    sampler = coreset.RS2Sampler(10, 0.5, num_replicas=4, rank=3, drop_last=True)
    assert sampler.slice_length == 4
    assert len(sampler) == 1
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        coreset.RS2Sampler(10, 0.1, num_replicas=4, drop_last=True)
    assert caught.value.argument == "fraction"


def test_rs2_epochs_depend_only_on_seed_and_epoch() -> None:
    a = coreset.RS2Sampler(1000, 0.1, seed=7)
    b = coreset.RS2Sampler(1000, 0.1, seed=7)
    seen = {}
    for epoch in (5, 2, 14, 5, 0):
        a.set_epoch(epoch)
        seen.setdefault(epoch, list(a))
        assert list(a) == seen[epoch]
    for epoch in (0, 14, 2):
        b.set_epoch(epoch)
        assert list(b) == seen[epoch]
    other = coreset.RS2Sampler(1000, 0.1, seed=8)
    assert list(other) != seen[0]
    b.load_state_dict(a.state_dict())
    assert list(b) == list(a)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 60),
    fraction=st.floats(0.01, 1.0),
    replicas=st.integers(1, 5),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
)
def test_rs2_properties(n: int, fraction: float, replicas: int, drop_last: bool, seed: int) -> None:
    try:
        shards = [
            coreset.RS2Sampler(
                n, fraction, seed=seed, num_replicas=replicas, rank=r, drop_last=drop_last
            )
            for r in range(replicas)
        ]
    except thrifty.InvalidArgumentError as error:
        # Too few items for the replicas with drop_last, or more than n without it.
        rejected = error.argument
    else:
        rejected = None
    wanted = int(np.ceil(fraction * n))
    fits = wanted // replicas > 0 if drop_last else -(-wanted // replicas) * replicas <= n
    assert rejected == (None if fits else "fraction")
    if rejected:
        return
    length = shards[0].slice_length
    assert length % replicas == 0
    assert abs(length - np.ceil(fraction * n)) < replicas
    epochs = -(-2 * n // length)
    items = []
    for epoch in range(epochs):
        parts = []
        for s in shards:
            s.set_epoch(epoch)
            parts.append(list(s))
        assert all(len(p) == len(shards[0]) for p in parts)
        assert sorted(functools.reduce(operator.iadd, parts, [])) == sorted(
            shards[0].epoch_slice().tolist()
        )
        whole = shards[0].epoch_slice()
        assert len(set(whole.tolist())) == len(whole)
        items.append(whole)
    assert_passes_are_permutations(np.concatenate(items), n)
    # A fresh sampler that jumps straight to the last epoch (a resume) agrees.
    resumed = coreset.RS2Sampler(
        n, fraction, seed=seed, num_replicas=replicas, rank=0, drop_last=drop_last
    )
    np.testing.assert_array_equal(resumed.epoch_slice(epochs - 1), items[-1])


def test_rs2_hundred_million() -> None:
    n = 10**8
    sampler = coreset.RS2Sampler(n, 0.001, seed=1)
    first = sampler.epoch_slice(0)
    assert len(first) == 100_000
    assert len(np.unique(first)) == len(first)
    assert first.min() >= 0
    assert first.max() < n


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n": 0, "fraction": 0.5}, "n"),
        ({"n": 10, "fraction": 0.0}, "fraction"),
        ({"n": 10, "fraction": 1.5}, "fraction"),
        ({"n": 10, "fraction": "half"}, "fraction"),
        ({"n": 10, "fraction": 0.5, "num_replicas": 0}, "num_replicas"),
        ({"n": 10, "fraction": 0.5, "num_replicas": 2, "rank": 2}, "rank"),
        ({"n": 10, "fraction": 0.5, "seed": -1}, "seed"),
    ],
)
def test_rs2_bad_input(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        coreset.RS2Sampler(**kwargs)  # type: ignore[arg-type]
    assert caught.value.argument == argument


def test_rs2_is_a_torch_sampler() -> None:
    sampler = coreset.RS2Sampler(10, 0.5)
    assert isinstance(sampler, torch.utils.data.Sampler)
    loader = torch.utils.data.DataLoader(list(range(100, 110)), sampler=sampler, batch_size=5)
    (batch,) = list(loader)
    assert sorted(batch.tolist()) == sorted((sampler.epoch_slice() + 100).tolist())


# --- ImportanceSampler ---


def test_importance_draws_follow_the_mixed_scores() -> None:
    scores = np.array([0.0, 1.0, 2.0, 5.0, 0.0, 10.0])
    mix = 0.2
    p = (1 - mix) * scores / scores.sum() + mix / len(scores)
    sampler = coreset.ImportanceSampler(scores, 50_000, seed=3, mix=mix)
    drawn = np.array(list(sampler))
    counts = np.bincount(drawn, minlength=len(scores))
    assert stats.chisquare(counts, p * len(drawn)).pvalue > P_VALUE


@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("mix", [0.0, 0.3])
def test_importance_weighted_mean_loss_is_unbiased(replacement: bool, mix: float) -> None:
    scores = np.array([1.0, 4.0, 0.5, 2.0, 8.0, 3.0])
    loss = torch.tensor([0.3, 2.0, 0.1, 1.5, 3.0, 0.7], dtype=torch.float64)
    sampler = coreset.ImportanceSampler(scores, 3, replacement=replacement, seed=2, mix=mix)
    estimates = []
    for epoch in range(4000):
        sampler.set_epoch(epoch)
        index = torch.tensor(list(sampler))
        w = sampler.weights_for(index, dtype=torch.float64)
        estimates.append(float((loss[index] * w).mean()))
    mean, error = np.mean(estimates), np.std(estimates, ddof=1) / np.sqrt(len(estimates))
    assert abs(mean - float(loss.mean())) <= SIGMAS * error


def test_importance_weights_formulas() -> None:
    scores = np.array([1.0, 3.0, 0.0, 4.0])
    with_replacement = coreset.ImportanceSampler(scores, 10)
    w = with_replacement.weights_for(np.array([0, 1, 3]), dtype=torch.float64)
    np.testing.assert_allclose(w.numpy(), 1.0 / (4 * scores[[0, 1, 3]] / 8.0))
    assert with_replacement.weights_for([0]).dtype == torch.float32
    # Drawing every positive score without replacement: pi = 1, w = num_samples / n.
    everything = coreset.ImportanceSampler(scores, 3, replacement=False)
    assert sorted(everything) == [0, 1, 3]
    assert everything.weights_for([0, 1, 3]).tolist() == [0.75, 0.75, 0.75]


def test_importance_shards_split_the_epoch_draw() -> None:
    scores = np.random.default_rng(0).random(500)
    shards = [
        coreset.ImportanceSampler(scores, 101, seed=5, num_replicas=3, rank=r) for r in range(3)
    ]
    whole = coreset.ImportanceSampler(scores, 101, seed=5, replacement=True)
    for epoch in (0, 1):
        whole.set_epoch(epoch)
        draw = list(whole)
        parts = []
        for s in shards:
            s.set_epoch(epoch)
            parts.append(list(s))
        assert [len(s) for s in shards] == [34, 34, 33]
        assert parts[2] == draw[2::3]
        assert sorted(functools.reduce(operator.iadd, parts, [])) == sorted(draw)
    without = [
        coreset.ImportanceSampler(scores, 90, replacement=False, num_replicas=3, rank=r)
        for r in range(3)
    ]
    flat = [i for s in without for i in s]
    assert len(set(flat)) == 90


def test_importance_epochs_are_deterministic_and_scores_update_next_iteration() -> None:
    scores = np.random.default_rng(1).random(1000)
    a = coreset.ImportanceSampler(scores, 200, seed=9)
    b = coreset.ImportanceSampler(scores, 200, seed=9)
    a.set_epoch(4)
    first = list(a)
    b.set_epoch(1)
    list(b)
    b.set_epoch(4)
    assert list(b) == first
    a.set_epoch(5)
    assert list(a) != first
    a.set_epoch(4)
    before = a.weights_for(first)
    a.update_scores(scores[::-1].copy())
    # The epoch in progress keeps the weights of its own draw...
    torch.testing.assert_close(a.weights_for(first), before)
    # ...and the next iteration draws from the new scores.
    assert list(a) != first
    b.load_state_dict(a.state_dict())
    assert list(b) == list(a)
    with pytest.raises(thrifty.ShapeError) as caught:
        a.update_scores(np.ones(999))
    assert caught.value.argument == "scores"


def test_importance_mix_makes_zero_scores_drawable() -> None:
    scores = np.array([0.0, 1.0])
    assert set(coreset.ImportanceSampler(scores, 200)) == {1}
    assert set(coreset.ImportanceSampler(scores, 200, mix=0.5)) == {0, 1}
    assert sorted(coreset.ImportanceSampler(scores, 2, replacement=False, mix=0.1)) == [0, 1]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "argument"),
    [
        ((np.array([1.0, np.nan]), 2), {}, thrifty.NonFiniteError, "scores"),
        ((np.array([1.0, -1.0]), 2), {}, thrifty.InvalidArgumentError, "scores"),
        ((np.zeros(3), 2), {}, thrifty.InvalidArgumentError, "scores"),
        ((np.ones((2, 2)), 2), {}, thrifty.ShapeError, "scores"),
        ((np.ones(3), -1), {}, thrifty.InvalidArgumentError, "num_samples"),
        (
            (np.array([1.0, 0.0]), 2),
            {"replacement": False},
            thrifty.InvalidArgumentError,
            "num_samples",
        ),
        ((np.ones(3), 2), {"mix": 1.5}, thrifty.InvalidArgumentError, "mix"),
        ((np.ones(3), 2), {"num_replicas": 2, "rank": 5}, thrifty.InvalidArgumentError, "rank"),
    ],
)
def test_importance_bad_input(
    args: tuple[object, ...], kwargs: dict[str, object], error: type, argument: str
) -> None:
    with pytest.raises(error) as caught:
        coreset.ImportanceSampler(*args, **kwargs)  # type: ignore[arg-type]
    assert caught.value.argument == argument


def test_importance_weights_for_rejects_out_of_range_indices() -> None:
    sampler = coreset.ImportanceSampler(np.ones(4), 2)
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        sampler.weights_for([4])
    assert caught.value.argument == "indices"


def test_importance_hundred_million_where_torch_multinomial_refuses() -> None:
    n = 10**8
    scores = np.ones(n, dtype=np.float32)
    scores[::3] = 4.0
    with pytest.raises(RuntimeError):
        torch.multinomial(torch.from_numpy(scores), 1000, replacement=True)
    for replacement in (True, False):
        sampler = coreset.ImportanceSampler(scores, 1000, replacement=replacement, seed=1)
        drawn = np.array(list(sampler))
        assert len(drawn) == 1000
        assert drawn.min() >= 0
        assert drawn.max() < n
        # 1/3 of the items hold 2/3 of the mass.
        assert 0.5 < np.mean(drawn % 3 == 0) < 0.8
        assert torch.isfinite(sampler.weights_for(drawn)).all()


# --- last_layer_gradient_norms ---


def test_gradient_norms_match_autograd_per_sample() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 4, dtype=torch.float64)
    features = torch.randn(8, 5, dtype=torch.float64)
    targets = torch.randint(0, 4, (8,))
    expected = []
    for i in range(8):
        layer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(features[i : i + 1]), targets[i : i + 1])
        loss.backward()
        assert layer.weight.grad is not None
        assert layer.bias.grad is not None
        squared = layer.weight.grad.pow(2).sum() + layer.bias.grad.pow(2).sum()
        expected.append(float(squared.sqrt()))
    got = coreset.last_layer_gradient_norms(features, layer(features), targets)
    assert not got.requires_grad
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize(
    ("features", "logits", "targets", "error", "argument"),
    [
        (
            np.ones((2, 3)),
            torch.ones(2, 2),
            torch.zeros(2, dtype=torch.long),
            thrifty.DTypeError,
            "features",
        ),
        (
            torch.ones(2),
            torch.ones(2, 2),
            torch.zeros(2, dtype=torch.long),
            thrifty.ShapeError,
            "features",
        ),
        (
            torch.ones(2, 3),
            torch.ones(3, 2),
            torch.zeros(2, dtype=torch.long),
            thrifty.ShapeError,
            "logits",
        ),
        (
            torch.ones(2, 3),
            torch.ones(2, 2),
            torch.zeros(3, dtype=torch.long),
            thrifty.ShapeError,
            "targets",
        ),
        (torch.ones(2, 3), torch.ones(2, 2), torch.zeros(2), thrifty.DTypeError, "targets"),
        (
            torch.ones(2, 3),
            torch.ones(2, 2),
            torch.tensor([0, 2]),
            thrifty.InvalidArgumentError,
            "targets",
        ),
    ],
)
def test_gradient_norms_bad_input(
    features: object, logits: object, targets: object, error: type, argument: str
) -> None:
    with pytest.raises(error) as caught:
        coreset.last_layer_gradient_norms(features, logits, targets)
    assert caught.value.argument == argument


def test_importance_with_replacement_draws_from_its_alias_table() -> None:
    # The sampler reuses one alias table across epochs. sample() draws from the same table
    # when m >= n / 4 (below that, by inverse CDF: same distribution, other draws).
    from thrifty.coreset._importance import epoch_seed

    scores = np.random.default_rng(4).random(5000)
    table = _native.CoresetAliasTable(scores)
    sampler = coreset.ImportanceSampler(scores, 300, seed=6)
    for epoch in (0, 3):
        sampler.set_epoch(epoch)
        assert list(sampler) == table.draw(300, epoch_seed(6, epoch)).tolist()
    np.testing.assert_array_equal(table.draw(1250, 11), coreset.sample(scores, 1250, seed=11)[0])
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        _native.CoresetAliasTable(np.array([1.0, -1.0]))
    assert caught.value.argument == "scores"
