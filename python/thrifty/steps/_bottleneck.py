"""Bottleneck Sampling (arXiv 2503.18940): high-low-high resolution stages, training-free.

Most of a diffusion transformer's cost is attention over the image tokens, and a model
pretrained at a lower resolution denoises the coarse structure of the middle of the
trajectory just as well at that lower resolution. Bottleneck Sampling therefore runs the
first stage at full resolution (to fix the layout), the middle stages at a reduced one, and
the last stage at full resolution again (to restore detail). At each transition the clean
sample is predicted, resized, and re-noised with fresh noise; each stage has its own
timestep shift. The paper reports up to 3x faster image generation on FLUX.1-dev at
comparable quality.

:func:`thrifty.steps.bottleneck_plan` lays the ``k`` velocity evaluations out over the
stages and fixes every stage's time nodes; this module is the sampler:
:func:`sample_bottleneck` runs a plan on any velocity field that accepts several
resolutions, and resizes and re-noises the state between stages.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from thrifty._arrays import is_cupy_array, is_torch_tensor
from thrifty._checks import check_choice, check_seed
from thrifty._extras import require
from thrifty.errors import DTypeError, InvalidArgumentError, ShapeError
from thrifty.steps._bottleneck_plan import BottleneckPlan
from thrifty.steps._grid import Float64Array
from thrifty.steps._sampling import Solver
from thrifty.steps._velocity import Velocity, check_state, check_velocity, evaluate, inference

__all__ = ["sample_bottleneck"]

Resize = Callable[[Any, tuple[int, int]], Any]
Upsample = Literal["nearest", "bilinear"]

_SOLVERS = ("euler", "heun")
_UPSAMPLES = ("nearest", "bilinear")


def sample_bottleneck(
    velocity: Velocity,
    noise: Any,
    plan: BottleneckPlan,
    *,
    solver: Solver = "euler",
    seed: int = 0,
    resize: Resize | None = None,
    upsample: Upsample = "nearest",
    return_info: bool = False,
) -> Any:
    """Run a :class:`BottleneckPlan`: each stage at its resolution, re-noising in between.

    Within a stage this is :func:`thrifty.steps.sample` on the stage's ``times``. At each
    transition, Bottleneck Sampling (arXiv 2503.18940):

    1. predicts the clean sample ``x1_hat = x + (1 - t) v(x, t)`` from the velocity of the
       stage's last step (at that step's start node; for Euler this equals predicting from
       the stage's end state with the same velocity), so a transition costs **no** extra
       evaluation: Euler takes exactly ``plan.k`` evaluations, Heun ``2 * plan.k``, with
       Heun's prediction made at its last predictor point;
    2. resizes ``x1_hat`` to the next stage's resolution, by area averaging down and by
       ``upsample`` up;
    3. re-noises it with fresh seeded Gaussian noise to the stage's re-noise time ``t'``:
       ``x = t' x1_hat + (1 - t') eps``.

    Parameters
    ----------
    velocity : callable
        ``(x, t) -> v`` on NumPy arrays or torch tensors of shape ``(batch, C, h, w)`` at
        every stage's resolution; ``t`` has shape ``(batch,)``.
    noise : array or tensor, shape (batch, C, H, W)
        The full-resolution noise at ``t = 0``. ``H * scale`` and ``W * scale`` must be
        integers for every stage's scale. If the first stage is below full resolution, the
        noise is block-averaged to it and rescaled to unit variance (integer factors only).
    plan : BottleneckPlan
        From :func:`bottleneck_plan`.
    solver : {"euler", "heun"}
    seed : int
        Seeds the re-noising (``numpy.random.default_rng``, cast to ``noise``'s dtype and
        device), so NumPy and torch runs draw the same noise.
    resize : callable, optional
        ``resize(x, (h, w))`` returning ``x`` resized to ``(batch, C, h, w)`` in its own
        framework, to replace the built-in resizing (for example a latent upsampler).
    upsample : {"nearest", "bilinear"}
        Built-in upsampling: nearest neighbour (the best CLIP score among the interpolations
        in the paper's ablation, its Table 7) or bilinear (half-pixel centres). torch uses
        ``torch.nn.functional.interpolate`` (``"area"``, ``"nearest-exact"``,
        ``"bilinear"``), NumPy an exact separable equivalent.
    return_info : bool
        Also return a dict with ``nfe`` (velocity evaluations), ``shapes`` (each stage's
        state shape) and ``renoise_times``.

    Returns
    -------
    The state at ``t = 1`` at full resolution, in ``noise``'s framework (and the info dict).

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import steps
    >>> def velocity(x, t):  # rectified flow to an all-ones image, at any resolution
    ...     return (1.0 - x) / (1.0 - t[:, None, None, None])
    >>> noise = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    >>> plan = steps.bottleneck_plan(10)
    >>> x, info = steps.sample_bottleneck(velocity, noise, plan, return_info=True)
    >>> bool(np.allclose(x, 1.0)), info["nfe"], info["shapes"]
    (True, 10, [(2, 3, 8, 8), (2, 3, 4, 4), (2, 3, 8, 8)])
    """
    if not isinstance(plan, BottleneckPlan):
        raise InvalidArgumentError(
            f"plan must be a BottleneckPlan from bottleneck_plan(), got {type(plan).__name__}",
            "plan",
        )
    check_velocity(velocity)
    x = check_state(noise, "noise")
    if x.ndim != 4:
        raise ShapeError(f"noise must have shape (batch, C, H, W), got {tuple(x.shape)}", "noise")
    method: Solver = "heun" if check_choice(solver, "solver", _SOLVERS) == "heun" else "euler"
    check_seed(seed)
    if resize is not None and not callable(resize):
        raise InvalidArgumentError(f"resize must be callable, got {resize!r}", "resize")
    mode: Upsample = (
        "bilinear" if check_choice(upsample, "upsample", _UPSAMPLES) == "bilinear" else "nearest"
    )
    height, width = int(x.shape[2]), int(x.shape[3])
    sizes = [_stage_size(height, width, stage.scale) for stage in plan.stages]
    rng = np.random.default_rng(int(seed))
    nfe = 0
    shapes: list[tuple[int, ...]] = []
    with inference(x):
        if sizes[0] != (height, width):
            x = _pool_noise(x, sizes[0])
        clean: Any = None
        for i, (stage, size) in enumerate(zip(plan.stages, sizes, strict=True)):
            if i > 0:
                if sizes[i - 1] != size:
                    grow = size[0] > sizes[i - 1][0]
                    clean = _resize(clean, size, grow, resize, mode)
                t_entry = stage.renoise_time
                eps = _standard_normal(rng, (int(x.shape[0]), int(x.shape[1]), *size), x)
                x = t_entry * clean + (1.0 - t_entry) * eps
            shapes.append(tuple(int(d) for d in x.shape))
            last_stage = i == len(plan.stages) - 1
            x, clean, used = _run_stage(velocity, x, stage.times, method, last_stage)
            nfe += used
    if return_info:
        info = {
            "nfe": nfe,
            "shapes": shapes,
            "renoise_times": [stage.renoise_time for stage in plan.stages],
        }
        return x, info
    return x


def _run_stage(
    velocity: Velocity, x: Any, times: Float64Array, solver: Solver, last_stage: bool
) -> tuple[Any, Any, int]:
    """The stage's ODE solve, written exactly as :func:`thrifty.steps.sample`'s, so that a
    one-stage plan reproduces it bit for bit. Off the last stage, the final update is
    replaced by the clean-sample prediction from the same evaluations."""
    used = 0
    final = times.size - 2
    for index, (t0, t1) in enumerate(itertools.pairwise(times)):
        dt = float(t1 - t0)
        v0 = evaluate(velocity, x, float(t0))
        used += 1
        if solver == "euler":
            if index == final and not last_stage:
                return x, x + (1.0 - float(t0)) * v0, used
            x = x + dt * v0
        else:
            predicted = x + dt * v0
            v1 = evaluate(velocity, predicted, float(t1))
            used += 1
            if index == final and not last_stage:
                return x, predicted + (1.0 - float(t1)) * v1, used
            x = x + (0.5 * dt) * (v0 + v1)
    return x, None, used


def _stage_size(height: int, width: int, scale: float) -> tuple[int, int]:
    size = []
    for name, length in (("height", height), ("width", width)):
        exact = length * scale
        rounded = round(exact)
        if rounded < 1 or abs(exact - rounded) > 1e-6:
            raise ShapeError(
                f"noise {name} {length} times stage scale {scale} is {exact:g}, not a whole "
                f"number of pixels; use a {name} that every stage's scale divides",
                "noise",
            )
        size.append(int(rounded))
    return size[0], size[1]


def _pool_noise(x: Any, size: tuple[int, int]) -> Any:
    """Block-average noise to a first stage below full resolution, keeping unit variance."""
    batch, channels, height, width = (int(d) for d in x.shape)
    h, w = size
    if height % h or width % w:
        raise ShapeError(
            f"noise of size {height}x{width} must reduce by whole factors to the first "
            f"stage's {h}x{w}",
            "noise",
        )
    blocks = x.reshape(batch, channels, h, height // h, w, width // w)
    gain = math.sqrt((height // h) * (width // w))
    if is_torch_tensor(x):
        return blocks.mean(dim=(3, 5)) * gain
    return blocks.mean(axis=(3, 5)) * gain


def _standard_normal(rng: np.random.Generator, shape: tuple[int, ...], like: Any) -> Any:
    eps = rng.standard_normal(shape)
    if is_torch_tensor(like):
        torch = require("torch")
        return torch.from_numpy(eps).to(device=like.device, dtype=like.dtype)
    if is_cupy_array(like):
        import cupy

        return cupy.asarray(eps, dtype=like.dtype)
    return eps.astype(like.dtype, copy=False)


def _resize(
    x: Any, size: tuple[int, int], grow: bool, resize: Resize | None, upsample: Upsample
) -> Any:
    expected = (*(int(d) for d in x.shape[:2]), *size)
    if resize is not None:
        out = resize(x, size)
        if type(out) is not type(x) and not (is_torch_tensor(out) and is_torch_tensor(x)):
            raise DTypeError(
                f"resize must return the same kind of array as its input "
                f"({type(x).__name__}), got {type(out).__name__}",
                "resize",
            )
        if tuple(out.shape) != expected:
            raise ShapeError(
                f"resize must return shape {expected}, got {tuple(out.shape)}", "resize"
            )
        return out
    if is_torch_tensor(x):
        functional = require("torch.nn.functional")
        if not grow:
            return functional.interpolate(x, size=size, mode="area")
        if upsample == "nearest":
            return functional.interpolate(x, size=size, mode="nearest-exact")
        return functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    rows = _resize_matrix(int(x.shape[2]), size[0], grow, upsample)
    columns = _resize_matrix(int(x.shape[3]), size[1], grow, upsample)
    if is_cupy_array(x):
        import cupy

        return cupy.asarray(rows, dtype=x.dtype) @ x @ cupy.asarray(columns.T, dtype=x.dtype)
    return rows.astype(x.dtype) @ x @ columns.T.astype(x.dtype)


def _resize_matrix(n_in: int, n_out: int, grow: bool, upsample: Upsample) -> Float64Array:
    """The ``(n_out, n_in)`` matrix of one axis of torch's ``interpolate`` for that mode."""
    matrix = np.zeros((n_out, n_in), dtype=np.float64)
    ratio = n_in / n_out
    for i in range(n_out):
        if not grow:
            # "area" is adaptive average pooling: bin i covers [floor(i r), ceil((i + 1) r)).
            start = math.floor(i * ratio)
            stop = math.ceil((i + 1) * ratio)
            matrix[i, start:stop] = 1.0 / (stop - start)
        elif upsample == "nearest":
            matrix[i, min(math.floor((i + 0.5) * ratio), n_in - 1)] = 1.0
        else:
            source = max((i + 0.5) * ratio - 0.5, 0.0)
            low = min(math.floor(source), n_in - 1)
            high = min(low + 1, n_in - 1)
            weight = source - low
            matrix[i, low] += 1.0 - weight
            matrix[i, high] += weight
    return matrix
