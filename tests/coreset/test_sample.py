"""coreset.sample: inverse-CDF, alias-table and without-replacement draws against exact
distributions."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import thrifty
from thrifty import _native, coreset

# A correct sampler fails a test at this level with probability 1e-4 per test.
P_VALUE = 1e-4
# Frequencies are compared to exact probabilities within this many standard errors
# (a two-sided miss has probability about 6e-7 per comparison).
SIGMAS = 5.0


def chi_square_p(indices: np.ndarray, probabilities: np.ndarray) -> float:
    """The chi-square p-value of the counts, bins with small expectation merged."""
    m = len(indices)
    observed = np.bincount(indices, minlength=len(probabilities)).astype(np.float64)
    expected = probabilities * m
    order = np.argsort(expected)
    small = order[np.cumsum(expected[order]) < 5.0]
    keep = np.setdiff1d(np.arange(len(probabilities)), small)
    obs = np.append(observed[keep], observed[small].sum())
    exp = np.append(expected[keep], expected[small].sum())
    if exp[-1] == 0.0:
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, exp).pvalue)


def grouped_chi_square_p(drawn: np.ndarray, groups: np.ndarray, p: np.ndarray) -> float:
    """The chi-square p-value of the draws' group labels; groups expecting under 5 merged."""
    size = int(groups.max()) + 1
    observed = np.bincount(drawn, minlength=size).astype(np.float64)
    expected = np.bincount(groups, weights=p, minlength=size) * len(drawn)
    small = expected < 5.0
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] < 5.0:
        # Too little expected mass left to test on its own: add it to the smallest bin.
        smallest = int(np.argmin(exp[:-1]))
        obs[smallest] += obs[-1]
        exp[smallest] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    exp *= obs.sum() / exp.sum()
    return float(stats.chisquare(obs, exp).pvalue)


DISTRIBUTIONS = {
    "uniform": np.ones(50),
    "random": np.random.default_rng(1).random(1000),
    "zeros": np.array([0.0, 3.0, 0.0, 1.0, 0.0, 0.5, 0.0]),
    "skewed": 2.0 ** -np.arange(60.0),
    "one_heavy": np.concatenate([[1e6], np.ones(2000)]),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_with_replacement_passes_chi_square(name: str) -> None:
    scores = DISTRIBUTIONS[name]
    p = scores / scores.sum()
    for seed in (0, 1):
        indices, _ = coreset.sample(scores, 200_000, seed=seed)
        assert chi_square_p(indices, p) > P_VALUE
    assert set(np.flatnonzero(scores == 0)).isdisjoint(indices.tolist())


def _huge_and_tiny() -> np.ndarray:
    # A few huge weights among a million tiny ones (a third of them zero), over 16 chunks.
    scores = np.full(10**6, 1e-3)
    scores[::3] = 0.0
    scores[[7, 65_537, 400_000, 999_999]] = [2e3, 5e2, 1e3, 1e2]
    return scores


LARGE_DISTRIBUTIONS = {
    "huge_and_tiny": _huge_and_tiny,
    "skewed_repeating": lambda: 2.0 ** -(np.arange(10**6) % 50.0),
    "uneven": lambda: np.random.default_rng(3).random(10**6) ** 4,
}


@pytest.mark.parametrize("name", sorted(LARGE_DISTRIBUTIONS))
def test_inverse_cdf_draws_pass_chi_square(name: str) -> None:
    # m < n / 4: sample() draws by inverse CDF over block partial sums.
    scores = LARGE_DISTRIBUTIONS[name]()
    p = scores / scores.sum()
    # Per-item counts expect under 5 here, so the items are grouped twice: by magnitude
    # (floor(log2 score): a draw off by one item shifts mass between groups) and into runs
    # of 1000 consecutive items (a draw in the wrong block or chunk shifts it too).
    positive = scores > 0
    magnitude = np.zeros(len(scores), dtype=np.int64)
    magnitude[positive] = 1100 + np.floor(np.log2(scores[positive])).astype(np.int64)
    runs = np.arange(len(scores)) // 1000
    for seed in (0, 1):
        indices, weights = coreset.sample(scores, 200_000, seed=seed)
        assert np.all(scores[indices] > 0)
        for groups in (magnitude, runs):
            assert grouped_chi_square_p(groups[indices], groups, p) > P_VALUE
        np.testing.assert_allclose(weights, scores.sum() / (200_000 * scores[indices]))
    # i.i.d. in draw order, not sorted: a consecutive pair ascends with probability
    # (1 - sum p^2) / 2 (the ascents' count has a standard deviation below sqrt(m)).
    ascending = np.count_nonzero(np.diff(indices) > 0)
    expected = (1.0 - np.dot(p, p)) / 2 * (len(indices) - 1)
    assert abs(ascending - expected) < 6 * np.sqrt(len(indices))


def test_with_replacement_weights_are_one_over_m_p() -> None:
    scores = np.array([2.0, 0.0, 1.0, 5.0])
    indices, weights = coreset.sample(scores, 1000, seed=3)
    np.testing.assert_allclose(weights, scores.sum() / (1000 * scores[indices]))


def successive_inclusion(scores: list[Fraction], m: int) -> list[Fraction]:
    """Exact inclusion probabilities of successive sampling, over every ordered draw."""
    n = len(scores)
    pi = [Fraction(0)] * n
    for order in itertools.permutations(range(n), m):
        if any(scores[i] == 0 for i in order):
            continue
        probability = Fraction(1)
        left = sum(scores)
        for i in order:
            probability *= scores[i] / left
            left -= scores[i]
        for i in order:
            pi[i] += probability
    return pi


CASES = [
    ([1, 2, 3, 4], 2),
    ([1, 1, 1, 10, 0, 2], 3),
    ([5, 1, 1, 1, 1, 1], 1),
    ([1, 2, 4, 8, 16], 3),
    ([3, 0, 1], 2),
    # n / m >= 64 takes the exponential jumps (A-ExpJ); the cases above draw every rank.
    ([0 if i % 11 == 0 else 1 + (i % 7) * 3 for i in range(130)], 2),
]


@pytest.mark.parametrize(("raw", "m"), CASES)
def test_without_replacement_inclusion_matches_successive_sampling(raw: list[int], m: int) -> None:
    scores = np.array(raw, dtype=np.float64)
    exact = np.array([float(p) for p in successive_inclusion([Fraction(s) for s in raw], m)])
    rounds = 4000
    counts = np.zeros(len(raw))
    for seed in range(rounds):
        indices, _ = coreset.sample(scores, m, replace=False, seed=seed)
        assert len(set(indices.tolist())) == m
        counts[indices] += 1
    frequency = counts / rounds
    error = np.sqrt(exact * (1 - exact) / rounds)
    assert np.all(np.abs(frequency - exact) <= SIGMAS * error + 1e-12)


@pytest.mark.parametrize(("raw", "m"), CASES)
def test_horvitz_thompson_weights_are_unbiased(raw: list[int], m: int) -> None:
    scores = np.array(raw, dtype=np.float64)
    f = np.random.default_rng(7).random(len(raw)) * (scores > 0)
    rounds = 4000
    estimates = np.empty(rounds)
    for seed in range(rounds):
        indices, weights = coreset.sample(scores, m, replace=False, seed=10_000 + seed)
        estimates[seed] = np.sum(weights * f[indices])
    standard_error = estimates.std(ddof=1) / np.sqrt(rounds)
    assert abs(estimates.mean() - f.sum()) <= SIGMAS * standard_error + 1e-12


def test_first_draw_without_replacement_follows_p() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    firsts = np.array([coreset.sample(scores, 3, replace=False, seed=s)[0][0] for s in range(3000)])
    assert chi_square_p(firsts, scores / scores.sum()) > P_VALUE


def test_without_replacement_large_m_over_many_chunks() -> None:
    # 3 * 2^20 items: several chunks, whose reservoirs the merge must combine exactly.
    rng = np.random.default_rng(0)
    scores = rng.random(3 << 20)
    indices, weights = coreset.sample(scores, 5000, replace=False, seed=1)
    assert len(np.unique(indices)) == 5000
    assert np.all(weights >= 1.0)
    # Heavier items are drawn more often: the mean score of the sample is above the mean.
    assert scores[indices].mean() > scores.mean() + 0.1
    f = rng.random(len(scores))
    estimate = np.sum(weights * f[indices])
    assert abs(estimate - f.sum()) < 0.05 * f.sum()


def test_taking_every_positive_score_gives_unit_weights() -> None:
    scores = np.array([0.0, 1.0, 2.0, 0.0, 7.0])
    indices, weights = coreset.sample(scores, 3, replace=False, seed=4)
    assert sorted(indices.tolist()) == [1, 2, 4]
    assert weights.tolist() == [1.0, 1.0, 1.0]


def test_same_seed_same_draws_different_seed_different() -> None:
    scores = np.random.default_rng(2).random(10_000)
    for replace in (True, False):
        a = coreset.sample(scores, 500, replace=replace, seed=11)
        b = coreset.sample(scores, 500, replace=replace, seed=11)
        c = coreset.sample(scores, 500, replace=replace, seed=12)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0])


_DIGEST = """
import hashlib, numpy as np
from thrifty import coreset
scores = np.random.default_rng(5).random(3 << 20)
h = hashlib.sha256()
for replace in (True, False):
    i, w = coreset.sample(scores, 40_000, replace=replace, seed=9)
    h.update(i.tobytes()); h.update(w.tobytes())
print(h.hexdigest())
"""


def test_draws_do_not_depend_on_the_thread_count() -> None:
    digests = []
    for threads in ("1", "2", "5"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, check=True
        )
        digests.append(out.stdout.strip())
    assert len(digests[0]) == 64
    assert digests[0] == digests[1] == digests[2]


def test_accepts_float32_and_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    scores = np.random.default_rng(3).random(1000).astype(np.float32)
    expected = coreset.sample(scores.astype(np.float64), 100, seed=1)
    for given_scores in (scores, torch.from_numpy(scores)):
        got = coreset.sample(given_scores, 100, seed=1)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert got[0].dtype == np.int64
    assert got[1].dtype == np.float64


def test_zero_draws_are_empty() -> None:
    for replace in (True, False):
        indices, weights = coreset.sample(np.ones(3), 0, replace=replace)
        assert indices.shape == (0,)
        assert weights.shape == (0,)
        assert indices.dtype == np.int64
        assert weights.dtype == np.float64


@pytest.mark.parametrize(
    ("scores", "m", "replace", "error", "argument"),
    [
        (np.array([1.0, np.nan]), 1, True, thrifty.NonFiniteError, "scores"),
        (np.array([1.0, np.inf]), 1, False, thrifty.NonFiniteError, "scores"),
        (np.array([1.0, -1.0]), 1, True, thrifty.InvalidArgumentError, "scores"),
        (np.zeros(4), 1, True, thrifty.InvalidArgumentError, "scores"),
        (np.zeros(4), 0, True, thrifty.InvalidArgumentError, "scores"),
        (np.array([]), 0, True, thrifty.ShapeError, "scores"),
        (np.ones((2, 2)), 1, True, thrifty.ShapeError, "scores"),
        (np.array([1e308, 1e308]), 1, True, thrifty.NonFiniteError, "scores"),
        (np.ones(3), -1, True, thrifty.InvalidArgumentError, "m"),
        (np.ones(3), 1.5, True, thrifty.InvalidArgumentError, "m"),
        (np.ones(3), True, True, thrifty.InvalidArgumentError, "m"),
        (np.ones(3), 4, False, thrifty.InvalidArgumentError, "m"),
        (np.array([1.0, 0.0, 1.0]), 3, False, thrifty.InvalidArgumentError, "m"),
        (np.array(["a", "b"]), 1, True, thrifty.DTypeError, "scores"),
        ([1.0, 2.0], 1, "yes", thrifty.InvalidArgumentError, "replace"),
    ],
)
def test_bad_input_names_the_argument(
    scores: object, m: object, replace: object, error: type, argument: str
) -> None:
    with pytest.raises(error) as caught:
        coreset.sample(scores, m, replace=replace)  # type: ignore[arg-type]
    assert caught.value.argument == argument
    assert argument in str(caught.value)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.0])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        coreset.sample(np.ones(3), 1, seed=seed)  # type: ignore[arg-type]
    assert caught.value.argument == "seed"


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1e6)), min_size=1, max_size=40).filter(
        lambda xs: any(x > 0 for x in xs)
    ),
    m=st.integers(0, 40),
    seed=st.integers(0, 2**64 - 1),
)
def test_draws_are_valid_for_any_scores(raw: list[float], m: int, seed: int) -> None:
    scores = np.array(raw)
    positive = int(np.count_nonzero(scores))
    indices, weights = coreset.sample(scores, m, seed=seed)
    assert len(indices) == m
    assert np.all(scores[indices] > 0)
    np.testing.assert_allclose(weights, scores.sum() / (m * scores[indices]))
    if m > positive:
        with pytest.raises(thrifty.InvalidArgumentError):
            coreset.sample(scores, m, replace=False, seed=seed)
        return
    indices, weights = coreset.sample(scores, m, replace=False, seed=seed)
    assert len(np.unique(indices)) == m
    assert np.all(scores[indices] > 0)
    assert np.all(weights >= 1.0)
    assert np.all(np.isfinite(weights))


def test_hundred_million_scores() -> None:
    n = 10**8
    scores = np.ones(n, dtype=np.float64)
    scores[::7] = 3.0
    scores[5] = 0.0
    for replace in (True, False):
        indices, weights = coreset.sample(scores, 1000, replace=replace, seed=1)
        assert len(indices) == 1000
        assert indices.min() >= 0
        assert indices.max() < n
        assert 5 not in indices.tolist()
        assert np.all(np.isfinite(weights))
        assert np.all(weights > 0)
    # Items of score 3 are 1/7 of the data but 3/9 of the mass: drawn about 1/3 of the time.
    share = np.mean(indices % 7 == 0)
    assert 0.2 < share < 0.5


def _child_draws(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    scores = np.random.default_rng(5).random(3 << 20)
    drawn = [coreset.sample(scores, 40_000, replace=r, seed=9)[0].tolist() for r in (True, False)]
    perm = _native.coreset_permutation(3 << 20, 1, 0)
    queue.put((drawn, hashlib.sha256(perm.tobytes()).hexdigest()))


@pytest.mark.timeout(120)
def test_forked_child_draws_the_same_without_hanging() -> None:
    # A DataLoader worker is a child forked after the parent used the Rust pool.
    scores = np.random.default_rng(5).random(3 << 20)
    expected = [
        coreset.sample(scores, 40_000, replace=r, seed=9)[0].tolist() for r in (True, False)
    ]
    perm = hashlib.sha256(_native.coreset_permutation(3 << 20, 1, 0).tobytes()).hexdigest()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_draws, args=(queue,))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert got == (expected, perm)


def test_more_draws_than_memory_is_an_error_not_a_crash() -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        coreset.sample(np.ones(3), 2**62)
    assert caught.value.argument == "m"
    with pytest.raises(thrifty.InvalidArgumentError) as caught:
        _native.coreset_permutation(2**60)
    assert caught.value.argument == "n"


def test_draws_too_many_for_memory_are_an_error_naming_m() -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as raised:
        _native.CoresetAliasTable(np.ones(2)).draw(2**63)
    assert raised.value.argument == "m"


def test_scores_whose_exponential_ranks_overflow_are_refused_without_replacement() -> None:
    with pytest.raises(thrifty.InvalidArgumentError) as raised:
        coreset.sample(np.array([1e-310, 1.0]), 1, replace=False, seed=0)
    assert raised.value.argument == "scores"
    # With replacement they are drawn, with weights exact to the last digits.
    scores = np.array([5e-324, 1e-323, 2e-323])
    indices, weights = coreset.sample(scores, 3, seed=0)
    np.testing.assert_allclose(weights, scores.sum() / (3 * scores[indices]), rtol=1e-12)
    # The same draws and weights as the same proportions in normal numbers.
    scaled = coreset.sample(scores * 2.0**1000, 3, seed=0)
    np.testing.assert_array_equal(indices, scaled[0])
    np.testing.assert_allclose(weights, scaled[1], rtol=1e-12)
