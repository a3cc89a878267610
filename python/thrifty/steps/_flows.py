"""Analytic flows: rectified flow from N(0, I) to a Gaussian mixture, with its exact velocity.

They are the ground truth for choosing and validating schedules without a trained network:
the marginal velocity is known in closed form, and the ODE solution is computed to
round-off with many RK4 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty._arrays import host_array, is_gpu_array, is_torch_tensor
from thrifty._checks import check_int, check_length, check_positive, check_real, check_seed
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError
from thrifty.steps._velocity import check_state, to_host


@dataclass(frozen=True)
class GaussianMixtureFlow:
    """Rectified flow ``x_t = t x_1 + (1 - t) x_0`` from ``x_0 ~ N(0, I)`` to a mixture.

    Component ``k`` is ``N(means[k], stds[k]^2 I)`` with weight ``weights[k]``. Given the
    component, ``x_t ~ N(t mu, s_t^2 I)`` with ``s_t^2 = t^2 s^2 + (1 - t)^2``, so the
    marginal velocity ``E[x_1 - x_0 | x_t = x]`` is the posterior-weighted sum of
    ``mu + (t s^2 - (1 - t)) / s_t^2 (x - t mu)``.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> flow = steps.GaussianMixtureFlow.ring(modes=8, radius=2.0, std=0.15)
    >>> x = flow.solve(np.random.default_rng(0).standard_normal((4, 2)))
    >>> bool(np.allclose(np.linalg.norm(x, axis=1), 2.0, atol=0.6))
    True
    """

    means: np.ndarray[Any, np.dtype[np.float64]]
    stds: np.ndarray[Any, np.dtype[np.float64]]
    weights: np.ndarray[Any, np.dtype[np.float64]]

    def __post_init__(self) -> None:
        means = host_array(self.means, "means", dtype=np.float64, ndim=2)
        count = means.shape[0]
        stds = host_array(self.stds, "stds", dtype=np.float64).reshape(-1)
        weights = host_array(self.weights, "weights", dtype=np.float64).reshape(-1)
        if count < 1 or stds.shape != (count,) or weights.shape != (count,):
            raise InvalidArgumentError(
                f"means (k, d), stds (k,) and weights (k,) must agree; got {means.shape}, "
                f"{stds.shape} and {weights.shape}",
                "means",
            )
        for name, array in (("means", means), ("stds", stds), ("weights", weights)):
            if not np.isfinite(array).all():
                raise NonFiniteError(f"{name} must be finite, got {array.tolist()}", name)
        if not (stds > 0).all() or not (weights > 0).all():
            raise InvalidArgumentError("stds and weights must be positive", "stds")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)
        object.__setattr__(self, "weights", weights / weights.sum())

    @classmethod
    def ring(cls, modes: int = 8, radius: float = 2.0, std: float = 0.15) -> GaussianMixtureFlow:
        """Equal-weight 2-D Gaussians on a circle: the classic "8 Gaussians" target."""
        count = check_length(modes, "modes", minimum=1, itemsize=16)
        radius = check_real(radius, "radius")
        std = check_positive(std, "std")
        angles = 2 * np.pi * np.arange(count) / count
        means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return cls(means, np.full(count, std), np.ones(count))

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def velocity(self, x: Any, t: Any) -> Any:
        """The exact marginal velocity at ``x`` (shape ``(batch, dim)``) and times ``t``."""
        check_state(x, "x")
        if tuple(x.shape[1:]) != (self.dim,):
            raise ShapeError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}", "x")
        xs = to_host(x).astype(np.float64)
        times = to_host(t) if is_gpu_array(t) else host_array(t, "t", kinds="fiu")
        times = times.astype(np.float64).reshape(-1)
        if times.size not in (1, xs.shape[0]):
            raise ShapeError(f"t must hold 1 or {xs.shape[0]} times, got {times.size}", "t")
        ts = np.broadcast_to(times, (xs.shape[0],))
        v = self._velocity(xs, ts[:, None])
        if is_torch_tensor(x):
            return x.new_tensor(v)
        return v.astype(x.dtype, copy=False)

    def _velocity(
        self, x: np.ndarray[Any, Any], t: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        s2 = self.stds[None, :] ** 2
        var = t**2 * s2 + (1 - t) ** 2  # (batch, k)
        centred = x[:, None, :] - t[:, :, None] * self.means[None]  # (batch, k, d)
        log_density = (
            np.log(self.weights)[None]
            - 0.5 * (centred**2).sum(-1) / var
            - 0.5 * self.dim * np.log(var)
        )
        log_density -= log_density.max(axis=1, keepdims=True)
        posterior = np.exp(log_density)
        posterior /= posterior.sum(axis=1, keepdims=True)
        gain = (t * s2 - (1 - t)) / var  # (batch, k)
        conditional = self.means[None] + gain[:, :, None] * centred
        return np.asarray((posterior[:, :, None] * conditional).sum(axis=1))

    def solve(self, noise: Any, *, steps: int = 2000) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The ODE solution at ``t = 1`` by classical RK4 in float64, exact to round-off."""
        steps = check_int(steps, "steps", minimum=1)
        x = host_array(noise, "noise", dtype=np.float64, ndim=2)
        if x.shape[1] != self.dim:
            raise ShapeError(f"noise must have shape (batch, {self.dim}), got {x.shape}", "noise")
        h = 1.0 / steps
        for i in range(steps):
            t = np.full((x.shape[0], 1), i * h)
            k1 = self._velocity(x, t)
            k2 = self._velocity(x + 0.5 * h * k1, t + 0.5 * h)
            k3 = self._velocity(x + 0.5 * h * k2, t + 0.5 * h)
            k4 = self._velocity(x + h * k3, t + h)
            x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    def sample_data(self, count: int, *, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Draw ``count`` points from the mixture itself."""
        count = check_length(count, "count", minimum=0, itemsize=8 * self.dim)
        rng = np.random.default_rng(check_seed(seed))
        component = rng.choice(self.means.shape[0], size=count, p=self.weights)
        return np.asarray(
            self.means[component]
            + self.stds[component, None] * rng.standard_normal((count, self.dim))
        )
