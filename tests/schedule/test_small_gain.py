"""thrifty.schedule.small_gain_certificate on quadratic games simulated with numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from thrifty import schedule
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError

# F(x) = A x - b for two scalar players: own curvature 1, player 0 pushed hard by player 1.
A = np.array([[1.0, 4.0], [0.1, 1.0]])
MU = np.array([1.0, 1.0])
COUPLING = np.array([[0.0, 4.0], [0.1, 0.0]])


def weighted_norm(x: Any, blocks: list[slice], weights: Any) -> float:
    return float(np.sqrt(sum(w * (x[b] @ x[b]) for b, w in zip(blocks, weights, strict=True))))


def rk4_step(a: Any, b: Any, x: Any, h: float) -> Any:
    def f(y: Any) -> Any:
        return a @ y - b

    k1 = f(x)
    k2 = f(x - h / 2 * k1)
    k3 = f(x - h / 2 * k2)
    k4 = f(x - h * k3)
    return x - h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def test_the_game_is_not_euclidean_monotone_but_is_certified() -> None:
    assert np.linalg.eigvalsh((A + A.T) / 2).min() < 0  # Euclidean analysis fails
    certificate = schedule.small_gain_certificate(MU, COUPLING, lipschitz=[1.0, 1.0])
    assert certificate.certified, certificate.reason
    assert certificate.reason == ""
    assert certificate.small_gain == pytest.approx(np.sqrt(0.4), rel=1e-9)
    # Two players with equal curvature: the best weights reach 1 - rho exactly.
    assert certificate.margin == pytest.approx(1 - np.sqrt(0.4), rel=1e-6)
    assert 0 < certificate.rate < 1
    assert 0 < certificate.step < certificate.max_step_euler
    assert 0 < certificate.max_step_rk4 <= certificate.max_step_euler
    with pytest.raises(ValueError, match="read-only"):
        certificate.weights[0] = 2.0


@pytest.mark.parametrize("lipschitz", [[1.0, 1.0], float(np.linalg.norm(A, 2))])
def test_gradient_play_contracts_at_the_certified_rate(lipschitz: Any) -> None:
    certificate = schedule.small_gain_certificate(MU, COUPLING, lipschitz=lipschitz)
    assert certificate.certified
    b = np.array([1.0, -2.0])
    nash = np.linalg.solve(A, b)
    blocks = [slice(0, 1), slice(1, 2)]
    for step, factor in [
        (certificate.step, certificate.rate),
        (0.99 * certificate.max_step_euler, None),
    ]:
        factor = certificate.euler_factor(step) if factor is None else factor
        assert factor < 1
        x = np.array([5.0, 5.0])
        for _ in range(200):
            before = weighted_norm(x - nash, blocks, certificate.weights)
            x = x - step * (A @ x - b)
            after = weighted_norm(x - nash, blocks, certificate.weights)
            assert after <= factor * before * (1 + 1e-12) + 1e-300
    h = 0.99 * certificate.max_step_rk4
    x = np.array([5.0, 5.0])
    for _ in range(200):
        before = weighted_norm(x - nash, blocks, certificate.weights)
        x = rk4_step(A, b, x, h)
        after = weighted_norm(x - nash, blocks, certificate.weights)
        assert after <= certificate.rk4_factor(h) * before * (1 + 1e-12) + 1e-300


def random_block_game(seed: int, dims: list[int]) -> tuple[Any, Any, Any, Any]:
    """A linear game whose bounds hold by construction: A_ii symmetric with eigenvalues in
    [mu_i, l_i], A_ij of spectral norm L_ij."""
    rng = np.random.default_rng(seed)
    n = len(dims)
    offsets = np.concatenate([[0], np.cumsum(dims)])
    mu = rng.uniform(0.5, 2.0, n)
    own = mu * rng.uniform(1.0, 2.0, n)
    coupling = rng.uniform(0.0, 1.0, (n, n)) * mu[:, None] / n
    np.fill_diagonal(coupling, 0.0)
    a = np.zeros((offsets[-1], offsets[-1]))
    for i in range(n):
        q, _ = np.linalg.qr(rng.normal(size=(dims[i], dims[i])))
        values = np.linspace(mu[i], own[i], dims[i])
        a[offsets[i] : offsets[i + 1], offsets[i] : offsets[i + 1]] = q @ np.diag(values) @ q.T
        for j in range(n):
            if i != j:
                block = rng.normal(size=(dims[i], dims[j]))
                block *= coupling[i, j] / np.linalg.norm(block, 2)
                a[offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]] = block
    blocks = [slice(offsets[i], offsets[i + 1]) for i in range(n)]
    return a, blocks, (mu, coupling, own), rng.normal(size=offsets[-1])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 3), min_size=2, max_size=4))
def test_random_block_games_contract_at_the_certified_rate(seed: int, dims: list[int]) -> None:
    a, blocks, (mu, coupling, own), b = random_block_game(seed, dims)
    certificate = schedule.small_gain_certificate(mu, coupling, lipschitz=own)
    # rho(D^-1 L) < 1 here since every row of D^-1 L sums to below 1.
    assert certificate.certified, certificate.reason
    nash = np.linalg.solve(a, b)
    x = nash + np.random.default_rng(seed).normal(size=len(b))
    # Once x is within rounding of the Nash point, a step moves it by rounding alone.
    rounding = 1e-12 * (1.0 + float(np.abs(nash).max()))
    for _ in range(50):
        before = weighted_norm(x - nash, blocks, certificate.weights)
        x = x - certificate.step * (a @ x - b)
        after = weighted_norm(x - nash, blocks, certificate.weights)
        assert after <= certificate.rate * before * (1 + 1e-9) + rounding


def weighted_operator_norm(matrix: Any, blocks: list[slice], weights: Any) -> float:
    """||W^1/2 matrix W^-1/2||_2 with W repeating each block's weight over its coordinates."""
    scale = np.concatenate(
        [np.full(b.stop - b.start, np.sqrt(w)) for b, w in zip(blocks, weights, strict=True)]
    )
    return float(np.linalg.norm(scale[:, None] * matrix / scale[None, :], 2))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 3), min_size=2, max_size=4))
def test_the_certified_euler_steps_contract_in_the_weighted_norm(
    seed: int, dims: list[int]
) -> None:
    # One Euclidean Lipschitz bound, the case whose weighted constant is derived here.
    a, blocks, (mu, coupling, _), _ = random_block_game(seed, dims)
    certificate = schedule.small_gain_certificate(mu, coupling, lipschitz=np.linalg.norm(a, 2))
    assert certificate.certified, certificate.reason
    # The true Lipschitz constant in the metric is within the certified one.
    identity = np.eye(len(a))
    true_lipschitz = weighted_operator_norm(a, blocks, certificate.weights)
    assert true_lipschitz <= certificate.lipschitz_weighted * (1 + 1e-9)
    for fraction in (0.1, 0.5, 0.99):
        h = fraction * certificate.max_step_euler
        # For a linear game the Euler map's Lipschitz constant is this operator norm: every
        # pair of points, not just the path to the equilibrium, comes closer by the factor.
        contraction = weighted_operator_norm(identity - h * a, blocks, certificate.weights)
        assert contraction <= certificate.euler_factor(h) * (1 + 1e-9)
        assert certificate.euler_factor(h) < 1


def test_one_euclidean_bound_gives_steps_through_the_blocks() -> None:
    lipschitz = float(np.linalg.norm(A, 2))
    certificate = schedule.small_gain_certificate(MU, COUPLING, lipschitz=lipschitz)
    w = certificate.weights
    by_norms = lipschitz * np.sqrt(w.max() / w.min())
    k = COUPLING + lipschitz * np.eye(2)
    by_blocks = np.linalg.norm(np.sqrt(w)[:, None] * k / np.sqrt(w)[None, :], 2)
    assert certificate.lipschitz_weighted == pytest.approx(min(by_norms, by_blocks), rel=1e-9)
    # Here the blocks' bound wins: steps several times longer than the norm change allows.
    assert certificate.lipschitz_weighted < 0.5 * by_norms


def test_rk4_at_the_certified_step_contracts_a_nonlinear_game() -> None:
    """F(x) = A x - b + c sin(x): the Jacobian A + c diag(cos x) keeps each block's curvature
    above mu_i - c and its own-block Lipschitz constant below l_i + c, and leaves the
    couplings alone, so the bounds hold everywhere; RK4 must contract every pair."""
    a, blocks, (mu, coupling, own), b = random_block_game(7, [2, 1, 2])
    c = 0.2 * float(mu.min())
    certificate = schedule.small_gain_certificate(mu - c, coupling, lipschitz=own + c)
    assert certificate.certified, certificate.reason

    def field(y: Any) -> Any:
        return a @ y - b + c * np.sin(3.0 * y) / 3.0

    def rk4(y: Any, h: float) -> Any:
        k1 = field(y)
        k2 = field(y - h / 2 * k1)
        k3 = field(y - h / 2 * k2)
        k4 = field(y - h * k3)
        return y - h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    h = 0.99 * certificate.max_step_rk4
    factor = certificate.rk4_factor(h)
    assert h > 0
    assert factor < 1
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = rng.normal(scale=3.0, size=(2, len(b)))
        before = weighted_norm(x - y, blocks, certificate.weights)
        after = weighted_norm(rk4(x, h) - rk4(y, h), blocks, certificate.weights)
        assert after <= factor * before * (1 + 1e-12)


def test_strong_coupling_is_refused_with_the_reason() -> None:
    certificate = schedule.small_gain_certificate(MU, [[0.0, 4.0], [1.0, 0.0]], lipschitz=5.0)
    assert not certificate.certified
    assert "small-gain" in certificate.reason
    assert certificate.small_gain == pytest.approx(2.0, rel=1e-9)
    assert certificate.max_step_euler == 0.0
    assert certificate.max_step_rk4 == 0.0
    # No weights can help: with this coupling the linear game itself is unstable.
    game = np.array([[1.0, 4.0], [1.0, 1.0]])
    assert np.linalg.eigvals(game).real.min() < 0


def test_non_positive_curvature_is_refused_with_the_reason() -> None:
    certificate = schedule.small_gain_certificate([1.0, 0.0], np.zeros((2, 2)), lipschitz=1.0)
    assert not certificate.certified
    assert "mu[1]" in certificate.reason


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.1, 3.0), min_size=1, max_size=4),
    st.lists(st.floats(0.0, 3.0), min_size=16, max_size=16),
)
def test_certified_exactly_when_the_small_gain_condition_holds(
    mu_list: list[float], coupling_list: list[float]
) -> None:
    n = len(mu_list)
    mu = np.array(mu_list)
    coupling = np.array(coupling_list[: n * n]).reshape(n, n)
    np.fill_diagonal(coupling, 0.0)
    rho = np.abs(np.linalg.eigvals(coupling / mu[:, None])).max()
    assume(abs(rho - 1) > 1e-3)
    certificate = schedule.small_gain_certificate(mu, coupling, lipschitz=float(mu.max()) + 1)
    assert certificate.certified == (rho < 1)
    assert certificate.small_gain == pytest.approx(rho, rel=1e-6, abs=1e-9)
    if certificate.certified:
        w = certificate.weights
        assert np.all(w > 0)
        assert w.max() == pytest.approx(1.0)
        assert 0 < certificate.margin <= mu.min() + 1e-12
        # Never worse than the Euclidean metric.
        euclidean = np.linalg.eigvalsh(np.diag(mu) - (coupling + coupling.T) / 2).min()
        assert certificate.margin >= euclidean - 1e-12
        # The margin is what the weights give: lambda_min(W^-1/2 S(w) W^-1/2).
        m = np.diag(mu) - coupling
        s = (np.diag(w) @ m + m.T @ np.diag(w)) / 2
        scale = np.diag(1 / np.sqrt(w))
        assert certificate.margin == pytest.approx(
            np.linalg.eigvalsh(scale @ s @ scale).min(), rel=1e-9, abs=1e-12
        )


@pytest.mark.parametrize(
    ("mu", "coupling", "lipschitz", "kind", "argument"),
    [
        ([1.0, np.nan], np.zeros((2, 2)), 1.0, NonFiniteError, "mu"),
        ([[1.0, 1.0]], np.zeros((2, 2)), 1.0, ShapeError, "mu"),
        ([1.0, 1.0], np.zeros((3, 3)), 1.0, ShapeError, "L"),
        ([1.0, 1.0], [[1.0, 0.0], [0.0, 0.0]], 1.0, InvalidArgumentError, "L"),
        ([1.0, 1.0], [[0.0, -1.0], [0.0, 0.0]], 1.0, InvalidArgumentError, "L"),
        ([1.0, 1.0], [[0.0, np.inf], [0.0, 0.0]], 1.0, NonFiniteError, "L"),
        ([1.0, 2.0], np.zeros((2, 2)), 1.0, InvalidArgumentError, "lipschitz"),
        ([1.0, 1.0], np.zeros((2, 2)), [1.0, 1.0, 1.0], ShapeError, "lipschitz"),
        ([1.0, 1.0], np.zeros((2, 2)), [1.0, 0.5], InvalidArgumentError, "lipschitz"),
        ([1.0, 1.0], np.zeros((2, 2)), np.nan, NonFiniteError, "lipschitz"),
        ([], np.zeros((0, 0)), 1.0, ShapeError, "mu"),
    ],
)
def test_bad_input_is_named(
    mu: Any, coupling: Any, lipschitz: Any, kind: type[Exception], argument: str
) -> None:
    with pytest.raises(kind) as caught:
        schedule.small_gain_certificate(
            np.asarray(mu, dtype=float), np.asarray(coupling), lipschitz=lipschitz
        )
    assert caught.value.argument == argument  # type: ignore[attr-defined]
