"""AdAdaGrad's adaptive batch size tests, estimated from micro-batch gradients.

Lau, Liu and Kolar (arXiv 2402.11215) grow the batch size of AdaGrad-type training with the
tests of adaptive sampling (Byrd, Chin, Nocedal, Wu 2012; Bollapragada, Byrd, Nocedal,
arXiv 1710.11258). Each test compares a variance of the per-sample gradients ``g_i`` of the
current batch with the squared norm of their mean ``gbar``:

* norm: ``b >= ||Var_i g_i||_1 / (eta^2 ||gbar||^2)``;
* inner product: ``b >= Var_i <g_i, gbar> / (theta^2 ||gbar||^4)``;
* orthogonality: ``b >= E_i ||g_i - (<g_i, gbar> / ||gbar||^2) gbar||^2 / (nu^2 ||gbar||^2)``;
* augmented: the larger of the inner-product and orthogonality batch sizes.

The variances come from micro-batch means, not per-sample gradients
-------------------------------------------------------------------
Split the batch of ``b = k r`` samples into ``k`` micro-batches of ``r`` samples and let
``m_j`` be the mean gradient of micro-batch ``j`` (what one backward pass of gradient
accumulation produces). For samples drawn independently with per-sample covariance
``Sigma``, ``Cov(m_j) = Sigma / r``. Hence, for any fixed linear map ``L``,

    E[ r / (k - 1) * sum_j ||L (m_j - gbar)||^2 ] = tr(L Sigma L^T),

the unbiased sample covariance across micro-batches, scaled by ``r``. (Equivalently, by the
law of total variance the within-micro-batch part of the per-sample variance averages out,
and what is left between micro-batches is ``1 / r`` of it.) With ``u = gbar / ||gbar||``:

* ``L = I`` gives ``||Var_i g_i||_1 = tr(Sigma)``, the norm test's numerator;
* ``L = u^T`` gives ``Var_i <g_i, u>``, and ``Var_i <g_i, gbar> = ||gbar||^2 Var_i <g_i, u>``;
* ``L = I - u u^T`` gives the orthogonality numerator: the sample mean of ``g_i - gbar``
  is zero, so the orthogonal parts of ``g_i`` and ``g_i - gbar`` have the same spread.

With ``r = 1`` these are exactly the per-sample sample variances of the paper (normalised
by ``b - 1``). With ``r > 1`` they are unbiased for the norm test and, treating ``u`` as
fixed, for the others; their spread grows as ``k`` falls, since only ``k - 1`` degrees of
freedom remain. At least two micro-batches are needed.

Two ways to feed it
-------------------
* :meth:`AdaptiveBatchSize.update` with the list of micro-batch gradients (each a flat
  tensor or a sequence of per-parameter tensors) and ``micro_batch_size``. The mean is
  formed first, so ``u`` is this step's exact mean direction.
* :meth:`AdaptiveBatchSize.accumulate` after each micro-batch's ``backward()`` of ordinary
  gradient accumulation, then :meth:`AdaptiveBatchSize.update` with no gradients. It reads
  the change of ``p.grad`` since the previous call (one extra copy of the gradients, no extra
  backward pass), keeping running sums (Welford's) so no micro-batch is stored. A running
  sum cannot revisit the micro-batches once ``gbar`` is known, so the inner-product and
  orthogonality directions use ``u`` of the previous step. The first step has none, so
  there those two tests only record ``u`` and keep the batch size (``last_estimate`` is
  NaN); the norm test needs no direction and is the same in both modes. A constant
  scale of the loss (``loss / k``) scales every gradient alike and leaves the tests unchanged.

Under ``torch.distributed`` (initialised, world size above one) every rank calls the same
method on its own micro-batches; counts, sums and centred sums of squares are all-reduced
(Chan's pairwise formula), so every rank gets the batch size of the union of all ranks'
micro-batches. The batch size is global: the number of samples over all ranks per step.

That all-reduce of the sums already yields the step's gradient: the mean over every rank's
micro-batches, kept as :attr:`AdaptiveBatchSize.mean_gradient`.
:meth:`AdaptiveBatchSize.write_gradient` puts it into ``p.grad``, so a data-parallel loop
steps on it instead of all-reducing the gradients a second time (with DDP's backward
passes inside ``no_sync()``): one gradient-sized all-reduce per step, as plain DDP has,
plus two of a few numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from thrifty._checks import check_choice, check_int, check_positive
from thrifty._extras import require
from thrifty.errors import DTypeError, InvalidArgumentError, NonFiniteError, ShapeError

if TYPE_CHECKING:
    import torch

__all__ = ["AdaptiveBatchSize", "BatchSizeTest"]

BatchSizeTest = Literal["norm", "inner_product", "augmented"]
_TESTS = ("norm", "inner_product", "augmented")

# The tolerances the authors of arXiv 2402.11215 publish runs with (github.com/timlautk/
# AdAdaGrad, README.md and expt.sh): the norm test with eta = 0.1 (MNIST, ImageNet; 0.25 and
# 0.5 on CIFAR), the augmented test with theta = 0.5, nu = 1 (its only run of that test,
# CIFAR-100). Its main.py argparse defaults are 0.1 for all three, but no published run
# uses theta = nu = 0.1, which would ask for 25x and 100x larger batches than theirs.
# Bollapragada, Byrd, Nocedal (arXiv 1710.11258) use theta = 0.9, nu = 5.84: larger
# tolerances, slower growth.
DEFAULT_ETA = 0.1
DEFAULT_THETA = 0.5
DEFAULT_NU = 1.0


def _flatten(gradient: Any, argument: str) -> torch.Tensor:
    """One micro-batch gradient as a flat floating tensor (per-parameter pieces joined)."""
    torch_ = require("torch")  # `torch` itself names the annotation-only import
    if isinstance(gradient, torch_.Tensor):
        pieces = [gradient]
    elif isinstance(gradient, (list, tuple)) and gradient:
        pieces = list(gradient)
    else:
        raise DTypeError(
            f"{argument} must hold tensors or non-empty sequences of tensors, "
            f"got {type(gradient).__name__}",
            argument,
        )
    for piece in pieces:
        if not isinstance(piece, torch_.Tensor) or not piece.is_floating_point():
            raise DTypeError(
                f"{argument} must hold floating-point tensors, got "
                f"{getattr(piece, 'dtype', type(piece).__name__)}",
                argument,
            )
    flat: torch.Tensor = torch_.cat([piece.detach().reshape(-1) for piece in pieces])
    # Half precision loses the small differences between micro-batches.
    if flat.dtype not in (torch_.float32, torch_.float64):
        flat = flat.float()
    if not bool(torch_.isfinite(flat).all()):
        raise NonFiniteError(f"{argument} holds NaN or infinity", argument)
    return flat


def _world() -> tuple[Any, bool]:
    torch = require("torch")
    distributed = torch.distributed
    active = (
        distributed.is_available()
        and distributed.is_initialized()
        and distributed.get_world_size() > 1
    )
    return distributed, active


class _Running:
    """Welford sums over one step's micro-batch means on this rank."""

    def __init__(self) -> None:
        self.count = 0
        self.micro_batch_size = 0
        self.mean: torch.Tensor | None = None
        self.squares = 0.0  # sum of ||m_j - mean||^2
        self.along_mean = 0.0  # mean of <m_j, u>
        self.along_squares = 0.0  # sum of (<m_j, u> - along_mean)^2
        self.direction: torch.Tensor | None = None

    def add(self, flat: torch.Tensor, direction: torch.Tensor | None) -> None:
        if self.mean is None:
            self.mean = flat.clone()
            self.count = 1
            self.direction = direction
            if direction is not None:
                self.along_mean = float(flat @ direction)
            return
        self.count += 1
        delta = flat - self.mean
        self.mean += delta / self.count
        self.squares += float(delta @ (flat - self.mean))
        if self.direction is None:
            return
        along = float(flat @ self.direction)
        along_delta = along - self.along_mean
        self.along_mean += along_delta / self.count
        self.along_squares += along_delta * (along - self.along_mean)


def _ratio(variance: float, tolerance: float, mean_square: float) -> float:
    """``variance / (tolerance**2 mean_square)``, infinite rather than an exception when an
    extreme tolerance makes the denominator underflow to 0 or overflow."""
    denominator = tolerance * tolerance * mean_square  # float products saturate, ** raises
    if denominator == 0.0:
        return math.inf if variance > 0 else 0.0
    return variance / denominator


def _trainable(parameters: Any) -> list[torch.Tensor]:
    """The tensors that need gradients, from a module, one tensor or an iterable of them."""
    torch = require("torch")
    if isinstance(parameters, torch.nn.Module):
        parameters = parameters.parameters()
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise InvalidArgumentError("parameters must hold trainable tensors", "parameters")
    return params


def _unit(vector: torch.Tensor) -> torch.Tensor:
    norm = float(vector.norm())
    return vector / norm if norm > 0 else vector.clone()


class AdaptiveBatchSize:
    """AdAdaGrad's batch size controller (Lau, Liu, Kolar, arXiv 2402.11215).

    After each optimizer step, :meth:`update` runs the chosen test on that step's
    micro-batch gradients and returns the batch size for the next step: the smallest batch
    that passes the test, never below the current one, ``min_batch`` or above ``max_batch``.
    See the module's documentation for how the per-sample variances are estimated from
    micro-batch means (no per-sample gradients) and for the two ways to feed it.

    Parameters
    ----------
    test
        ``"norm"`` (default), ``"inner_product"`` or ``"augmented"`` (inner product and
        orthogonality, the larger batch wins).
    eta
        Norm test tolerance, default 0.1 (the experiments of arXiv 2402.11215).
    theta
        Inner-product tolerance, default 0.5 (arXiv 2402.11215's augmented-test runs;
        arXiv 1710.11258 uses 0.9).
    nu
        Orthogonality tolerance, default 1.0 (arXiv 2402.11215's augmented-test runs;
        arXiv 1710.11258 uses 5.84).
    min_batch
        The batch size to start from and never go below, default 32.
    max_batch
        The cap, default 4096.

    With gradient accumulation, in a training loop (``k`` micro-batches of ``r`` samples)::

        controller = AdaptiveBatchSize("norm", min_batch=64, max_batch=4096)
        loader = DataLoader(dataset, batch_sampler=AdaptiveBatchSampler(sampler, controller))
        for batch in loader:                      # len(batch) == controller.batch_size
            optimizer.zero_grad()
            for micro in batch.split(r):
                (loss(model, micro) * len(micro) / len(batch)).backward()
                controller.accumulate(model, micro_batch_size=r)
            optimizer.step()
            controller.update()                   # the next batch is drawn at the new size

    Examples
    --------
    >>> import torch
    >>> from thrifty.schedule import AdaptiveBatchSize
    >>> controller = AdaptiveBatchSize("norm", min_batch=4, max_batch=64)
    >>> noisy = [torch.tensor([1.0, 0.0]) + torch.tensor([0.0, s]) for s in (-3.0, 3.0)]
    >>> controller.update(noisy, micro_batch_size=2)
    64
    >>> controller.batch_size
    64
    """

    def __init__(
        self,
        test: BatchSizeTest = "norm",
        *,
        eta: float = DEFAULT_ETA,
        theta: float = DEFAULT_THETA,
        nu: float = DEFAULT_NU,
        min_batch: int = 32,
        max_batch: int = 4096,
    ) -> None:
        check_choice(test, "test", _TESTS)
        self.test: BatchSizeTest = test
        self.eta = check_positive(eta, "eta")
        self.theta = check_positive(theta, "theta")
        self.nu = check_positive(nu, "nu")
        self.min_batch = check_int(min_batch, "min_batch", minimum=1)
        self.max_batch = check_int(max_batch, "max_batch", minimum=1)
        if self.max_batch < self.min_batch:
            raise InvalidArgumentError(
                f"max_batch must be at least min_batch={min_batch}, got {max_batch}", "max_batch"
            )
        self.batch_size = self.min_batch
        #: The test's unclamped batch size at the last update (``inf`` for a zero mean).
        self.last_estimate = math.nan
        #: The last update's mean gradient over every rank's micro-batches, flat (the
        #: parameters' gradients joined in order); ``None`` before the first update.
        self.mean_gradient: torch.Tensor | None = None
        self.steps = 0
        self._direction: torch.Tensor | None = None  # u of the last update
        self._running = _Running()
        self._previous: list[torch.Tensor] | None = None  # p.grad at the last accumulate

    # --- feeding -------------------------------------------------------------------------

    def accumulate(self, parameters: Any, *, micro_batch_size: int) -> None:
        """Record the gradient that the latest micro-batch's ``backward()`` added.

        Call it after each micro-batch's backward pass of gradient accumulation, with the
        model (or its parameters) and the number of samples in that micro-batch; then call
        :meth:`update` with no gradients after the optimizer step. Gradients must be zeroed
        between steps (``optimizer.zero_grad()``), as accumulation itself requires. Under
        DDP, run these backward passes inside ``model.no_sync()`` so that ``p.grad`` holds
        this rank's gradients; :meth:`update` all-reduces the statistics, and
        :meth:`write_gradient` then gives every rank the averaged gradient.
        """
        torch = require("torch")
        size = check_int(micro_batch_size, "micro_batch_size", minimum=1)
        if self._running.count and size != self._running.micro_batch_size:
            raise InvalidArgumentError(
                f"micro_batch_size must stay {self._running.micro_batch_size} within a step, "
                f"got {size}",
                "micro_batch_size",
            )
        params = _trainable(parameters)
        current = [
            p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params
        ]
        previous = self._previous
        if previous is not None and len(previous) != len(current):
            raise ShapeError(
                f"parameters must be the same tensors at every call, got {len(current)} "
                f"instead of {len(previous)}",
                "parameters",
            )
        delta = (
            current
            if previous is None
            else [now - before for now, before in zip(current, previous, strict=True)]
        )
        flat = _flatten(delta, "parameters")
        self._running.micro_batch_size = size
        direction = self._direction
        if direction is not None and direction.numel() != flat.numel():
            direction = None
        self._running.add(flat, None if direction is None else direction.to(flat.dtype))
        self._previous = current

    def update(
        self,
        micro_batch_grads: Sequence[Any] | None = None,
        *,
        micro_batch_size: int | None = None,
    ) -> int:
        """Run the test on one step's micro-batches and return the next batch size.

        Parameters
        ----------
        micro_batch_grads
            This rank's micro-batch mean gradients, at least two over all ranks, each a
            flat tensor or a list/tuple of per-parameter tensors (the same layout for all).
            ``None`` uses what :meth:`accumulate` recorded since the last update.
        micro_batch_size
            The number of samples in every micro-batch (required with
            ``micro_batch_grads``).

        Returns
        -------
        int
            The batch size for the next step, also kept in :attr:`batch_size`.
        """
        if micro_batch_grads is None:
            count, size, mean, squares, along, direction = self._from_running()
        else:
            if micro_batch_size is None:
                raise InvalidArgumentError(
                    "micro_batch_size is required with micro_batch_grads", "micro_batch_size"
                )
            size = check_int(micro_batch_size, "micro_batch_size", minimum=1)
            count, mean, squares, along, direction = self._from_list(micro_batch_grads)
        self._direction = direction
        self.mean_gradient = mean
        self.last_estimate = self._estimate(count, size, mean, squares, along)
        if not math.isnan(self.last_estimate):
            wanted = self.max_batch if math.isinf(self.last_estimate) else self.last_estimate
            self.batch_size = min(self.max_batch, max(self.batch_size, math.ceil(wanted)))
        self.steps += 1
        return self.batch_size

    def write_gradient(self, parameters: Any) -> None:
        """Set each parameter's ``.grad`` to its part of :attr:`mean_gradient`.

        ``parameters`` are the trainable tensors whose gradients the micro-batches held, in
        the same order (a module's ``parameters()``, or the module). Under
        ``torch.distributed`` this is the gradient averaged over every rank, identical on
        all of them: step the optimizer on it, without DDP's own all-reduce.

        It is the mean of the micro-batch gradients as :meth:`update` saw them. With
        :meth:`accumulate` those are the changes each micro-batch made to ``p.grad``: take
        each micro-batch's loss as its own mean (not divided by the number of
        micro-batches) for the batch's mean gradient; a loss divided by ``k`` gives ``1/k``
        of it.

        Examples
        --------
        >>> import torch
        >>> from thrifty.schedule import AdaptiveBatchSize
        >>> layer = torch.nn.Linear(2, 1, bias=False)
        >>> controller = AdaptiveBatchSize(min_batch=2)
        >>> _ = controller.update([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])],
        ...                       micro_batch_size=1)
        >>> controller.write_gradient(layer)
        >>> layer.weight.grad
        tensor([[2., 1.]])
        """
        mean = self.mean_gradient
        if mean is None:
            raise InvalidArgumentError(
                "write_gradient needs an update() first: there is no mean gradient yet",
                "parameters",
            )
        params = _trainable(parameters)
        total = sum(p.numel() for p in params)
        if total != mean.numel():
            raise ShapeError(
                f"parameters must hold the mean gradient's {mean.numel()} elements, got {total}",
                "parameters",
            )
        offset = 0
        for p in params:
            piece = mean[offset : offset + p.numel()].view_as(p)
            p.grad = piece.to(p.dtype).clone()
            offset += p.numel()

    # --- statistics ----------------------------------------------------------------------

    def _from_list(
        self, micro_batch_grads: Sequence[Any]
    ) -> tuple[int, torch.Tensor, float, float, torch.Tensor]:
        if isinstance(micro_batch_grads, (str, bytes)) or not isinstance(
            micro_batch_grads, Iterable
        ):
            raise DTypeError(
                f"micro_batch_grads must be a sequence, got {type(micro_batch_grads).__name__}",
                "micro_batch_grads",
            )
        flats = [_flatten(g, "micro_batch_grads") for g in micro_batch_grads]
        if {f.numel() for f in flats} - {flats[0].numel() if flats else 0}:
            raise ShapeError(
                "micro_batch_grads must all have the same number of elements, got "
                f"{sorted({f.numel() for f in flats})}",
                "micro_batch_grads",
            )
        torch = require("torch")
        dtype = torch.float64 if any(f.dtype == torch.float64 for f in flats) else torch.float32
        flats = [f.to(dtype) for f in flats]
        distributed, active = _world()
        local_count = len(flats)
        local_sum = torch.stack(flats).sum(0) if flats else None
        if active:
            numel = torch.tensor([float(flats[0].numel() if flats else -1)], dtype=torch.float64)
            sizes = [torch.zeros_like(numel) for _ in range(distributed.get_world_size())]
            distributed.all_gather(sizes, numel)
            known = {int(s.item()) for s in sizes} - {-1}
            if len(known) != 1:
                raise ShapeError(
                    f"micro_batch_grads must have one size on every rank, got {sorted(known)}",
                    "micro_batch_grads",
                )
            total = torch.zeros(known.pop() + 1, dtype=dtype)
            if local_sum is not None:
                total[:-1] = local_sum
            total[-1] = local_count
            distributed.all_reduce(total)
            count = round(float(total[-1]))
            mean = total[:-1] / count if count else total[:-1]
        else:
            count = local_count
            mean = local_sum / count if local_sum is not None else torch.zeros(0)
        if count < 2:
            raise InvalidArgumentError(
                f"micro_batch_grads must hold at least 2 micro-batches in all, got {count}",
                "micro_batch_grads",
            )
        direction = _unit(mean)
        # Second pass, centred at the global mean: no cancellation in the sums of squares.
        squares = sum(float((f - mean).square().sum()) for f in flats)
        along = sum(float((f - mean) @ direction) ** 2 for f in flats)
        if active:
            scalars = torch.tensor([squares, along], dtype=torch.float64)
            distributed.all_reduce(scalars)
            squares, along = float(scalars[0]), float(scalars[1])
        return count, mean, squares, along, direction

    def _from_running(self) -> tuple[int, int, torch.Tensor, float, float | None, torch.Tensor]:
        torch = require("torch")
        running, self._running, self._previous = self._running, _Running(), None
        distributed, active = _world()
        idle = float(running.mean is None)
        if active:
            # Agree first: a rank that raised alone would leave the others blocked in the
            # all-reduce below.
            flag = torch.tensor([idle], dtype=torch.float64)
            distributed.all_reduce(flag)
            idle = float(flag[0])
        if idle:
            raise InvalidArgumentError(
                "micro_batch_grads is None but accumulate() recorded nothing since the last "
                f"update (on {round(idle)} rank(s))",
                "micro_batch_grads",
            )
        assert running.mean is not None
        size, count, mean = running.micro_batch_size, running.count, running.mean
        squares, along, along_mean = running.squares, running.along_squares, running.along_mean
        if active:
            # Chan's pairwise combination: sums first, then each rank's centred sums plus
            # its count times its squared offset from the global mean.
            total = torch.cat(
                [
                    mean * count,
                    torch.tensor([float(count), along_mean * count, float(size)], dtype=mean.dtype),
                ]
            )
            distributed.all_reduce(total)
            global_count = round(float(total[-3]))
            global_mean = total[:-3] / global_count
            global_along = float(total[-2]) / global_count
            if round(float(total[-1])) != size * distributed.get_world_size():
                raise InvalidArgumentError(
                    "micro_batch_size must be the same on every rank", "micro_batch_size"
                )
            scalars = torch.tensor(
                [
                    squares + count * float((mean - global_mean).square().sum()),
                    along + count * (along_mean - global_along) ** 2,
                ],
                dtype=torch.float64,
            )
            distributed.all_reduce(scalars)
            count, mean = global_count, global_mean
            squares, along = float(scalars[0]), float(scalars[1])
        if count < 2:
            raise InvalidArgumentError(
                f"accumulate() must record at least 2 micro-batches per step, got {count}",
                "micro_batch_grads",
            )
        # Without a direction shared by every rank the along-u sums mean nothing.
        return count, size, mean, squares, None if running.direction is None else along, _unit(mean)

    def _estimate(
        self, count: int, size: int, mean: torch.Tensor, squares: float, along: float | None
    ) -> float:
        """The test's batch size from ``k`` micro-batches of ``r`` samples."""
        mean_square = float(mean.square().sum())
        if along is None and self.test != "norm":
            return math.nan
        if mean_square == 0.0:
            return math.inf
        scale = size / (count - 1)  # r / (k - 1): per-sample variance from micro-batch means
        trace = scale * squares
        along_variance = scale * (along or 0.0)
        # max(): rounding can leave the orthogonal part a hair below zero.
        orthogonal = max(trace - along_variance, 0.0)
        if self.test == "norm":
            return _ratio(trace, self.eta, mean_square)
        inner = _ratio(along_variance, self.theta, mean_square)
        if self.test == "inner_product":
            return inner
        return max(inner, _ratio(orthogonal, self.nu, mean_square))

    # --- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The batch size, step count and the reference direction; not an unfinished step."""
        return {
            "batch_size": self.batch_size,
            "steps": self.steps,
            "last_estimate": self.last_estimate,
            "direction": None if self._direction is None else self._direction.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; options stay those given to the constructor."""
        missing = {"batch_size", "steps", "last_estimate", "direction"} - set(state)
        if missing:
            raise InvalidArgumentError(f"state misses keys {sorted(missing)}", "state")
        batch_size = check_int(state["batch_size"], "state['batch_size']", minimum=1)
        if not self.min_batch <= batch_size <= self.max_batch:
            raise InvalidArgumentError(
                f"state['batch_size'] must lie in [{self.min_batch}, {self.max_batch}], "
                f"got {batch_size}",
                "state",
            )
        self.batch_size = batch_size
        self.steps = check_int(state["steps"], "state['steps']", minimum=0)
        self.last_estimate = float(state["last_estimate"])
        direction = state["direction"]
        self._direction = None if direction is None else direction.clone()
        self._running, self._previous = _Running(), None

    def __repr__(self) -> str:
        return (
            f"AdaptiveBatchSize(test={self.test!r}, eta={self.eta}, theta={self.theta}, "
            f"nu={self.nu}, min_batch={self.min_batch}, max_batch={self.max_batch}, "
            f"batch_size={self.batch_size})"
        )
