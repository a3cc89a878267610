"""Shared-seed SPSA: zeroth-order fine-tuning that exchanges one byte per worker and step.

"Just One Byte (per gradient)" (Zelikman et al., arXiv 2306.10015) distributes MeZO
(Malladi et al., arXiv 2305.17333): each worker perturbs the weights along a random direction
``z`` drawn from a seed, evaluates the loss on both sides, and sends only the projected
gradient ``g = (L(theta + eps z) - L(theta - eps z)) / (2 eps)``. Every worker regenerates
every other worker's ``z`` from its seed and applies the same updates in the same order, so
the models stay bit-identical while the wire carries one int8 code per worker.

Directions
    Rademacher (``z`` in {-1, +1}, as in Spall's SPSA): the bits come from a CPU
    ``torch.Generator`` (integer draws only), seeded by ``(seed, step, worker id, sample)``
    through splitmix64, so they are the same on every platform and for CPU and CUDA
    parameters alike (CUDA parameters receive the packed bits, one bit per weight). With
    ``z = +-1`` every perturbation and every update is one IEEE addition of ``+-c``, which
    rounds the same way everywhere. Directions are drawn one parameter at a time, never all
    at once.

Quantization (one byte)
    ``code = round(127 g / s)`` clipped to [-127, 127], rounded stochastically (the uniform
    comes from the same seed, so the estimate stays unbiased inside the clip range). The
    clip scale ``s = 4 sqrt(m)`` follows ``m``, an exponential moving average (decay 0.9) of
    the mean square of the dequantized scalars of each step; every worker saw the same codes,
    so every worker computes the same ``s`` and no scale travels. A saturated code pushes
    ``m`` up (by up to 2.5x per step), tiny codes let it decay. Code -128 is reserved: it
    tells every worker that one loss was not finite, and all of them refuse the step
    together.

Bookkeeping on the vote
    Each worker passes ``[code, id_hi, id_lo]`` to ``all_gather_scalars``: its code (the one
    byte of payload) and its stable id in two 32-bit halves (a float64 holds 53 bits). On
    thrifty's :class:`~thrifty.collective.Communicator` these ride on the commit vote itself,
    with no data links; the id keeps a worker's directions the same across joins and leaves,
    when ranks shift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from thrifty._checks import check_int, check_positive, check_seed
from thrifty._extras import require
from thrifty.diloco._transport import ScalarTransport, check_scalar_transport
from thrifty.errors import InternalError, InvalidArgumentError, NonFiniteError, PeerLost

if TYPE_CHECKING:
    import torch

__all__ = ["SPSAStepReport", "SharedSeedSPSA"]

#: The clip scale, in standard deviations of the projected gradient.
CLIP_SIGMAS = 4.0
#: Decay of the moving average of the squared projected gradient.
SCALE_DECAY = 0.9
#: Largest code; -128 is reserved for "a loss was not finite".
CODE_MAX = 127
NONFINITE_CODE = -128
#: Consecutive lost-peer retries of one step before the error is raised.
MAX_RETRIES = 16

_MASK64 = (1 << 64) - 1
_MIN_MEAN_SQUARE = 1e-60  # keeps the scale positive after long runs of zero codes
_DIRECTION = 0x5EED_D1EC  # stream tags: directions and rounding never share draws
_ROUNDING = 0x5EED_0DD5
_PARAM_DTYPES = ("torch.float32", "torch.float64", "torch.float16", "torch.bfloat16")


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _derive(*parts: int) -> int:
    """A 64-bit seed from integers, identical in every process and on every platform
    (Python's ``hash`` is salted per process)."""
    state = 0
    for part in parts:
        state = _splitmix64(state ^ (part & _MASK64))
    return state


def _quantize(value: float, scale: float, uniform: float) -> int:
    """``value`` as an int8 code of ``scale / 127`` steps, rounded up with probability equal
    to the fraction (``uniform`` in [0, 1)); non-finite values give the reserved code."""
    if not math.isfinite(value):
        return NONFINITE_CODE
    scaled = min(max(value / scale * CODE_MAX, -CODE_MAX), CODE_MAX)
    return min(math.floor(scaled + uniform), CODE_MAX)


def _dequantize(code: int, scale: float) -> float:
    return code * scale / CODE_MAX


def _loss_value(value: Any) -> float:
    torch = require("torch")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InvalidArgumentError(
                f"loss_fn must return a scalar, got a tensor of shape {tuple(value.shape)}",
                "loss_fn",
            )
        return float(value.detach().item())
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    raise InvalidArgumentError(
        f"loss_fn must return a scalar tensor or a number, got {type(value).__name__}", "loss_fn"
    )


@dataclass(frozen=True)
class SPSAStepReport:
    """What one :meth:`SharedSeedSPSA.step` did on this worker.

    Attributes
    ----------
    step
        The index of the step taken (the shared counter before it).
    loss
        This worker's loss, ``(L(theta + eps z) + L(theta - eps z)) / 2``, averaged over its
        samples: the loss at ``theta`` up to ``O(eps^2)``.
    projected_gradient
        This worker's projected gradient as every worker decoded it (averaged over samples).
    world_size
        How many workers' updates were applied.
    bytes_exchanged
        Payload bytes this worker sent: one int8 code per sample.
    scale
        The clip scale the codes of this step used.
    retries
        How many times the step was retried after a lost peer.

    Examples
    --------
    >>> from thrifty.diloco._spsa import SPSAStepReport
    >>> report = SPSAStepReport(step=0, loss=1.5, projected_gradient=-0.25, world_size=4,
    ...                         bytes_exchanged=1, scale=1.0, retries=0)
    >>> report.bytes_exchanged * report.world_size  # bytes on the wire for the step
    4
    """

    step: int
    loss: float
    projected_gradient: float
    world_size: int
    bytes_exchanged: int
    scale: float
    retries: int


class SharedSeedSPSA:
    """Zeroth-order fine-tuning over a transport, one byte per worker and step.

    Each :meth:`step`, every worker evaluates ``loss_fn`` at ``theta + eps z`` and
    ``theta - eps z`` (in place, under ``torch.no_grad()``, like MeZO; arXiv 2305.17333),
    quantizes the projected gradient to one byte, and gathers every worker's byte; then each
    worker regenerates every worker's direction from its seed and applies, in rank order,
    ``theta <- theta - lr * g_r * z_r / (world_size * samples)``. All workers end the step
    with bit-identical weights. The scheme is "Just One Byte" (arXiv 2306.10015); the module
    docstring describes the directions (Rademacher) and the quantizer.

    Memory: one copy of the trainable parameters for the duration of the step. The weights
    are restored from it after the two evaluations, exactly, where ``(theta + eps z) - eps z``
    would differ from ``theta`` in the last bits and the workers would drift apart.

    Membership: at its first step, and at the first step after the transport's epoch changed
    (thrifty's :class:`~thrifty.collective.Communicator`; torch.distributed has none), the
    worker calls :meth:`join`, which makes every member's parameters, step counter and
    quantizer state equal to the most common ones (``sync_state``). A lost peer
    (:class:`~thrifty.errors.PeerLost`) leaves the weights untouched; the step calls
    ``update_topology()`` and retries with the survivors. To admit newcomers, call
    ``transport.update_topology()`` between steps, on every member at the same
    :attr:`global_step`; a newcomer calls ``update_topology()`` then :meth:`join` to learn
    the step before choosing its batch. Build the model the same way on every worker: at
    the first join, rank 0's weights win.

    Parameters
    ----------
    model
        A ``torch.nn.Module``; its parameters with ``requires_grad`` are trained (float32,
        float64, float16 or bfloat16, contiguous, on any device). Buffers are not synced:
        keep the model in eval mode, or dropout would differ between the two evaluations.
    loss_fn
        ``loss_fn(model, batch)`` returning a scalar tensor (or a number).
    transport
        A :class:`~thrifty.collective.Communicator` or
        :class:`~thrifty.collective.TorchDistributed` (or any object with ``rank``,
        ``world_size``, ``all_gather_scalars``, ``sync_state`` and ``update_topology``).
    eps
        The perturbation size; MeZO's default is 1e-3. In bfloat16 it must exceed half a
        weight's spacing, or the perturbation rounds away.
    lr
        The learning rate (MeZO searched 1e-6 and 1e-7 for OPT-13B; small models take far
        larger ones).
    seed
        The seed every worker shares, in 0..2**64-1.
    samples
        Directions per worker and step (the paper's samples per machine); one byte each.
    initial_scale
        The clip scale of the first step, before any projected gradient has been seen.
    worker_id
        This worker's identity in the seeds, in 0..2**64-1, unique in the world; default:
        the transport's stable peer id (a Communicator's ``id``, random per process, so
        launches differ), else its rank (reproducible on torch.distributed). Pass one to
        make elastic runs reproducible.

    Examples
    --------
    >>> import torch
    >>> from thrifty import collective
    >>> from thrifty.diloco._spsa import SharedSeedSPSA
    >>> generator = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 4, generator=generator)
    >>> y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    >>> def loss_fn(model, batch):
    ...     inputs, targets = batch
    ...     return torch.nn.functional.mse_loss(model(inputs), targets)
    >>> coordinator = collective.Coordinator(secret="s3cret")
    >>> comm = collective.Communicator(coordinator.address, secret="s3cret")
    >>> comm.connect()
    >>> while comm.world_size < 1:  # every worker loops until the world it expects
    ...     comm.update_topology()
    >>> _ = torch.manual_seed(0)  # the same initial weights on every worker
    >>> model = torch.nn.Linear(4, 1)
    >>> spsa = SharedSeedSPSA(model, loss_fn, transport=comm, eps=1e-3, lr=0.05, seed=0)
    >>> reports = [spsa.step((x, y)) for _ in range(300)]
    >>> reports[-1].loss < reports[0].loss / 10, reports[-1].bytes_exchanged, spsa.global_step
    (True, 1, 300)
    >>> len(spsa.state_hash())  # equal on every worker
    32
    >>> comm.close()
    >>> coordinator.close()
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, Any], Any],
        *,
        transport: ScalarTransport,
        eps: float = 1e-3,
        lr: float,
        seed: int = 0,
        samples: int = 1,
        initial_scale: float = 1.0,
        worker_id: int | None = None,
    ) -> None:
        torch = require("torch")
        if not isinstance(model, torch.nn.Module):
            raise InvalidArgumentError(
                f"model must be a torch.nn.Module, got {type(model).__name__}", "model"
            )
        if not callable(loss_fn):
            raise InvalidArgumentError(
                f"loss_fn must be callable as loss_fn(model, batch), got {type(loss_fn).__name__}",
                "loss_fn",
            )
        checked = check_scalar_transport(transport)
        self._eps = check_positive(eps, "eps")
        self._lr = check_positive(lr, "lr")
        self._seed = check_seed(seed)
        # Bounded so a step's values stay a tiny payload of the commit vote.
        self._samples = check_int(samples, "samples", minimum=1, maximum=64)
        initial = check_positive(initial_scale, "initial_scale")
        self._fixed_id = (
            None
            if worker_id is None
            else check_int(worker_id, "worker_id", minimum=0, maximum=_MASK64)
        )
        self._named = list(model.named_parameters())
        for name, p in self._named:
            if str(p.dtype) not in _PARAM_DTYPES:
                raise InvalidArgumentError(
                    f"model parameters must be float32, float64, float16 or bfloat16, got "
                    f"{name} of {p.dtype}",
                    "model",
                )
            if not p.is_contiguous():
                raise InvalidArgumentError(
                    f"model parameters must be contiguous, got a strided {name}", "model"
                )
        self._params = [p for _, p in self._named if p.requires_grad]
        if not self._params:
            raise InvalidArgumentError("model has no parameters with requires_grad", "model")
        self._model = model
        self._loss_fn = loss_fn
        self._transport = checked
        self._step = 0
        # x * x rather than x ** 2: a float product saturates to inf, where ** raises.
        mean_square = (initial / CLIP_SIGMAS) * (initial / CLIP_SIGMAS)
        if not 0.0 < mean_square < math.inf:
            raise InvalidArgumentError(
                f"initial_scale must have a square float64 holds (about 1e-150 to 1e150), "
                f"got {initial_scale!r}",
                "initial_scale",
            )
        self._mean_square = mean_square
        # None until the first successful join; then the revision every member holds.
        self._revision: int | None = None
        self._joined_epoch: int | None = None

    # State --------------------------------------------------------------------------------

    @property
    def global_step(self) -> int:
        """Steps the world has taken: the counter that seeds the next step's directions."""
        return self._step

    @property
    def scale(self) -> float:
        """The clip scale the next step quantizes with (code 127 decodes to it)."""
        return CLIP_SIGMAS * math.sqrt(self._mean_square)

    def state_hash(self) -> str:
        """xxh3-128 (hex) over every parameter's name, dtype, shape and bytes.

        Equal on every worker after each step: a cheap proof that they are bit-identical.

        Examples
        --------
        >>> import torch
        >>> from thrifty.collective import Coordinator, Communicator
        >>> from thrifty.diloco._spsa import SharedSeedSPSA
        >>> coordinator = Coordinator(secret="s3cret")
        >>> comm = Communicator(coordinator.address, secret="s3cret")
        >>> comm.connect()
        >>> while comm.world_size < 1:
        ...     comm.update_topology()
        >>> model = torch.nn.Linear(3, 1)
        >>> loss_fn = lambda model, batch: model(batch).square().mean()
        >>> spsa = SharedSeedSPSA(model, loss_fn, transport=comm, lr=0.1)
        >>> before = spsa.state_hash()
        >>> with torch.no_grad():
        ...     _ = model.bias.add_(1.0)
        >>> before != spsa.state_hash()
        True
        >>> comm.close()
        >>> coordinator.close()
        """
        from thrifty.collective import state_hash

        digests = "".join(f"{name}:{state_hash(p.detach())};" for name, p in self._named)
        raw = digests.encode()
        raw += b"\0" * (-len(raw) % 8)  # the core hashes whole int64 elements
        return state_hash(np.frombuffer(raw, dtype=np.int64))

    def state_dict(self) -> dict[str, Any]:
        """The step counter and the quantizer's state (the weights live in the model's).

        Examples
        --------
        >>> import torch
        >>> from thrifty.collective import Coordinator, Communicator
        >>> from thrifty.diloco._spsa import SharedSeedSPSA
        >>> coordinator = Coordinator(secret="s3cret")
        >>> comm = Communicator(coordinator.address, secret="s3cret")
        >>> comm.connect()
        >>> while comm.world_size < 1:
        ...     comm.update_topology()
        >>> model = torch.nn.Linear(3, 1)
        >>> loss_fn = lambda model, batch: model(batch).square().mean()
        >>> spsa = SharedSeedSPSA(model, loss_fn, transport=comm, lr=0.1)
        >>> _ = spsa.step(torch.ones(2, 3))
        >>> saved = spsa.state_dict()
        >>> saved["step"]
        1
        >>> again = SharedSeedSPSA(model, loss_fn, transport=comm, lr=0.1)
        >>> again.load_state_dict(saved)
        >>> again.global_step, again.scale == spsa.scale
        (1, True)
        >>> comm.close()
        >>> coordinator.close()
        """
        return {"step": self._step, "mean_square": self._mean_square}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (load the model's own state beside it)."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"step", "mean_square"}:
            keys = sorted(state_dict) if isinstance(state_dict, Mapping) else None
            raise InvalidArgumentError(
                f"state_dict must hold exactly 'step' and 'mean_square', got "
                f"{keys if keys is not None else type(state_dict).__name__}",
                "state_dict",
            )
        step = check_int(state_dict["step"], "state_dict", minimum=0, maximum=2**63 - 1)
        mean_square = check_positive(state_dict["mean_square"], "state_dict")
        self._step = step
        self._mean_square = mean_square

    # Membership ---------------------------------------------------------------------------

    def _stable_id(self) -> int | None:
        if self._fixed_id is not None:
            return self._fixed_id
        peer_id = getattr(self._transport, "id", None)
        if isinstance(peer_id, (int, np.integer)) and not isinstance(peer_id, bool):
            return int(peer_id) & _MASK64
        return None

    def _worker_id(self) -> int:
        """The transport's stable peer id where it has one (thrifty's Communicator), else
        the rank (torch.distributed groups never change)."""
        peer_id = self._stable_id()
        return int(self._transport.rank) if peer_id is None else peer_id

    def _epoch(self) -> int | None:
        epoch = getattr(self._transport, "epoch", None)
        return None if epoch is None else int(epoch)

    def join(self) -> Any:
        """Make this worker's weights, step counter and quantizer state the world's.

        Every member calls it at the same time (:meth:`step` does, at its first step and
        after each change of epoch): the most common state wins, and the out-of-date members
        fetch it (``transport.sync_state``). A worker that never joined marks its state as
        its own, so newcomers with the same fresh model never outvote the members; in a world
        where nobody joined yet, rank 0's state wins. Returns the transport's sync report.

        Examples
        --------
        >>> import torch
        >>> from thrifty.collective import Coordinator, Communicator
        >>> from thrifty.diloco._spsa import SharedSeedSPSA
        >>> coordinator = Coordinator(secret="s3cret")
        >>> comm = Communicator(coordinator.address, secret="s3cret")
        >>> comm.connect()
        >>> comm.update_topology()  # a newcomer: admitted at the members' next vote
        >>> model = torch.nn.Linear(3, 1)
        >>> loss_fn = lambda model, batch: model(batch).square().mean()
        >>> spsa = SharedSeedSPSA(model, loss_fn, transport=comm, lr=0.1)
        >>> report = spsa.join()
        >>> spsa.global_step, report.world_size  # then pick the batch of that step
        (0, 1)
        >>> comm.close()
        >>> coordinator.close()
        """
        marker = 0
        if self._revision is None:
            # Unique per never-joined worker (see above); 0 once joined.
            peer_id = self._stable_id()
            marker = int(self._transport.rank) + 1 if peer_id is None else (peer_id or 1)
        counters = np.array([self._step, marker - (1 << 64) * (marker >= 1 << 63)], np.int64)
        scale = np.array([self._mean_square], dtype=np.float64)
        arrays: dict[str, Any] = {f"param.{name}": p.detach() for name, p in self._named}
        arrays["spsa.counters"] = counters
        arrays["spsa.mean_square"] = scale
        epoch = self._epoch()
        report = self._transport.sync_state(arrays)  # at the next revision
        step, mean_square = int(counters[0]), float(scale[0])
        if step < 0 or not (math.isfinite(mean_square) and mean_square > 0):
            raise InternalError(
                f"the synced state is corrupt: step {step}, mean square {mean_square}"
            )
        self._step = step
        self._mean_square = mean_square
        self._revision = int(report.revision)
        self._joined_epoch = epoch
        return report

    def _needs_join(self) -> bool:
        return self._revision is None or self._epoch() != self._joined_epoch

    # The step -----------------------------------------------------------------------------

    def _directions(self, worker_id: int, sample: int) -> Iterator[tuple[Any, Any]]:
        """``(parameter, z > 0)`` for each trainable parameter, drawn one at a time."""
        torch = require("torch")
        generator = torch.Generator(device="cpu")
        generator.manual_seed(_derive(self._seed, _DIRECTION, self._step, worker_id, sample))
        for p in self._params:
            n = p.numel()
            # Eight signs per random byte; the CPU draw keeps CUDA workers bit-exact too.
            packed = torch.randint(0, 256, ((n + 7) // 8,), dtype=torch.uint8, generator=generator)
            packed = packed.to(p.device)
            shifts = torch.arange(8, dtype=torch.uint8, device=p.device)
            bits = packed.unsqueeze(1).bitwise_right_shift(shifts).bitwise_and_(1)
            yield p, bits.reshape(-1)[:n].view(p.shape).bool()

    def _add_direction(self, worker_id: int, sample: int, amount: float) -> None:
        """``theta += amount * z``: one rounding per weight, the same on every platform."""
        torch = require("torch")
        for p, positive in self._directions(worker_id, sample):
            plus = torch.tensor(amount, dtype=p.dtype, device=p.device)
            p.add_(torch.where(positive, plus, -plus))

    def _evaluate(self, batch: Any, worker_id: int) -> tuple[list[int], float, float]:
        """This worker's codes, its loss and the scale of the codes; the weights come back
        bit-exact, also when ``loss_fn`` raises."""
        torch = require("torch")
        codes: list[int] = []
        losses: list[float] = []
        scale = self.scale
        with torch.no_grad():
            backup = [p.detach().clone() for p in self._params]
            try:
                for sample in range(self._samples):
                    self._add_direction(worker_id, sample, self._eps)
                    loss_plus = _loss_value(self._loss_fn(self._model, batch))
                    for p, saved in zip(self._params, backup, strict=True):
                        p.copy_(saved)
                    self._add_direction(worker_id, sample, -self._eps)
                    loss_minus = _loss_value(self._loss_fn(self._model, batch))
                    for p, saved in zip(self._params, backup, strict=True):
                        p.copy_(saved)
                    gradient = (loss_plus - loss_minus) / (2 * self._eps)
                    uniform = (
                        _derive(self._seed, _ROUNDING, self._step, worker_id, sample) >> 11
                    ) * 2.0**-53
                    codes.append(_quantize(gradient, scale, uniform))
                    losses.append((loss_plus + loss_minus) / 2)
            finally:
                for p, saved in zip(self._params, backup, strict=True):
                    p.copy_(saved)
        return codes, sum(losses) / len(losses), scale

    def _decode(self, rows: Any) -> list[tuple[int, list[int]]]:
        """``(worker id, codes)`` of each gathered row, in rank order."""
        table = np.asarray(rows, dtype=np.float64)
        width = self._samples + 2
        if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] != width:
            raise InvalidArgumentError(
                f"every worker must use samples={self._samples}: gathered rows of shape "
                f"{table.shape}, expected (world_size, {width})",
                "samples",
            )
        if not np.all(np.isfinite(table)) or not np.array_equal(table, np.round(table)):
            raise InternalError(f"gathered codes are not integers: {table.tolist()}")
        decoded: list[tuple[int, list[int]]] = []
        for row in table:
            codes = [int(c) for c in row[: self._samples]]
            if any(not NONFINITE_CODE <= c <= CODE_MAX for c in codes):
                raise InternalError(f"gathered codes outside int8: {codes}")
            decoded.append(((int(row[-2]) << 32) | int(row[-1]), codes))
        ids = [wid for wid, _ in decoded]
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError(
                f"worker ids must be unique in the world (they seed the directions), got "
                f"{[hex(i) for i in ids]}",
                "worker_id",
            )
        return decoded

    def step(self, batch: Any) -> SPSAStepReport:
        """One step on ``batch`` (this worker's data; any object ``loss_fn`` accepts).

        Every member calls it once per step. On :class:`~thrifty.errors.PeerLost` the step
        is retried with the survivors (up to ``MAX_RETRIES`` times in a row); on any other
        error the weights and the counters are as before the call. If any worker's loss was
        not finite, every worker raises :class:`~thrifty.errors.NonFiniteError` and no
        update is applied.

        Examples
        --------
        >>> import torch
        >>> from thrifty.collective import Coordinator, Communicator
        >>> from thrifty.diloco._spsa import SharedSeedSPSA
        >>> coordinator = Coordinator(secret="s3cret")
        >>> comm = Communicator(coordinator.address, secret="s3cret")
        >>> comm.connect()
        >>> while comm.world_size < 1:
        ...     comm.update_topology()
        >>> model = torch.nn.Linear(3, 1)
        >>> loss_fn = lambda model, batch: model(batch).square().mean()
        >>> spsa = SharedSeedSPSA(model, loss_fn, transport=comm, lr=0.1, samples=2)
        >>> report = spsa.step(torch.ones(2, 3))
        >>> report.step, report.world_size, report.bytes_exchanged
        (0, 1, 2)
        >>> comm.close()
        >>> coordinator.close()
        """
        retries = 0
        local: tuple[list[int], float, float] | None = None
        while True:
            try:
                if self._needs_join():
                    report = self.join()
                    if report.fetched:
                        local = None  # the weights or the step moved: evaluate again
                worker_id = self._worker_id()
                if local is None:
                    local = self._evaluate(batch, worker_id)
                values = [float(c) for c in local[0]]
                values += [float(worker_id >> 32), float(worker_id & 0xFFFFFFFF)]
                rows = self._transport.all_gather_scalars(values)
                break
            except PeerLost:
                retries += 1
                if retries > MAX_RETRIES:
                    raise
                self._transport.update_topology()
        codes, loss, scale = local
        decoded = self._decode(rows)
        refused = [hex(wid) for wid, cs in decoded if NONFINITE_CODE in cs]
        if refused:
            raise NonFiniteError(
                f"the loss was not finite on worker(s) {', '.join(refused)} at step "
                f"{self._step}: no update applied (check batch and lr)",
                "batch",
            )
        world_size = len(decoded)
        share = self._lr / (world_size * self._samples)
        squares = []
        torch = require("torch")
        with torch.no_grad():
            for wid, worker_codes in decoded:
                for sample, code in enumerate(worker_codes):
                    gradient = _dequantize(code, scale)
                    squares.append(gradient * gradient)
                    if code != 0:
                        self._add_direction(wid, sample, -share * gradient)
        mean_square = SCALE_DECAY * self._mean_square + (1 - SCALE_DECAY) * (
            sum(squares) / len(squares)
        )
        self._mean_square = max(mean_square, _MIN_MEAN_SQUARE)
        taken = self._step
        self._step += 1
        return SPSAStepReport(
            step=taken,
            loss=loss,
            projected_gradient=sum(_dequantize(c, scale) for c in codes) / len(codes),
            world_size=world_size,
            bytes_exchanged=len(codes),
            scale=scale,
            retries=retries,
        )
