"""A ``DistributedDataParallel`` communication hook that exchanges compressed gradients.

:func:`ddp_comm_hook` wraps a :class:`~thrifty.diloco.compressors.Compressor`, or an error
feedback wrapper around one (:class:`~thrifty.diloco.compressors.ErrorFeedback`,
:class:`~thrifty.diloco.compressors.EControl`), into the ``(hook, state)`` pair that
``DistributedDataParallel.register_comm_hook(state, hook)`` takes, in the manner of torch's
own ``powerSGD_hook`` (torch/distributed/algorithms/ddp_comm_hooks).

For each gradient bucket, every rank encodes its bucket to a fixed-size payload, the payloads
are all-gathered, and every rank decodes all of them and averages them in rank order, so all
ranks write bit-identical gradients and the replicas stay in step. An
:class:`~thrifty.diloco.compressors.LGreCo` is bound to each bucket's parameters (its
layers); on its planning iterations the ranks first all-gather their error tables (one
small blocking call) so that all choose the same levels.

Examples
--------
>>> import torch, torch.distributed as dist
>>> from thrifty.diloco.compressors import BlockQuantizer
>>> from thrifty.diloco._ddp_hook import ddp_comm_hook
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
>>> model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
>>> hook, state = ddp_comm_hook(BlockQuantizer("int8"))
>>> model.register_comm_hook(state, hook)
>>> model(torch.ones(3, 4)).sum().backward()
>>> state.bytes_sent  # 10 gradients: one float32 scale and 10 int8 codes, padded to 16
16
>>> dist.destroy_process_group()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from thrifty._checks import check_seed
from thrifty._extras import require
from thrifty.diloco.compressors import Compressor, Feedback, LGreCo
from thrifty.errors import InternalError, InvalidArgumentError

if TYPE_CHECKING:
    import torch
    from torch._C._distributed_c10d import GradBucket, ProcessGroup

__all__ = ["CompressedHookState", "ddp_comm_hook"]

_MASK = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def exchange_seed(seed: int, bucket: int, iteration: int) -> int:
    """The seed of one bucket's exchange: a 64-bit hash of ``(seed, bucket, iteration)``.

    Every rank computes the same value, so seeded compressors (random-k) pick the same
    coordinates everywhere, and different buckets and iterations get unrelated draws.

    Parameters
    ----------
    seed
        The hook's base seed.
    bucket
        The bucket's index.
    iteration
        The number of backward passes the hook has completed.

    Returns
    -------
    int
        A value in ``[0, 2**64)``.

    Examples
    --------
    >>> from thrifty.diloco._ddp_hook import exchange_seed
    >>> exchange_seed(0, 1, 2) == exchange_seed(0, 1, 2) != exchange_seed(0, 2, 1)
    True
    """
    mixed = _splitmix64(seed & _MASK)
    mixed = _splitmix64(mixed ^ (bucket & _MASK))
    return _splitmix64(mixed ^ (iteration & _MASK))


class CompressedHookState:
    """The state :func:`ddp_comm_hook` hands to DDP beside its hook.

    Attributes
    ----------
    compressor : Compressor
        What encodes each bucket (for an LGreCo, the unbound original each bucket's copy
        is made from).
    feedback : Feedback or None
        The error feedback wrapper, if one was given.
    process_group : ProcessGroup or None
        The group the payloads are all-gathered on; ``None`` is the default group.
    seed : int
        The base of every exchange's seed (see :func:`exchange_seed`).
    iteration : int
        Backward passes completed, counted when the last bucket's exchange starts.
    bytes_sent : int
        Payload bytes this rank has contributed to the all-gathers, in total.
    buckets : dict[int, dict[str, torch.Tensor]]
        The feedback state of each bucket, by bucket index.

    Examples
    --------
    >>> from thrifty.diloco.compressors import TopK
    >>> from thrifty.diloco._ddp_hook import ddp_comm_hook
    >>> _, state = ddp_comm_hook(TopK(0.01), seed=7)
    >>> state.seed, state.iteration, state.bytes_sent, state.feedback is None
    (7, 0, 0, True)
    """

    def __init__(
        self,
        compressor: Compressor,
        feedback: Feedback | None,
        *,
        process_group: ProcessGroup | None,
        seed: int,
    ) -> None:
        self.compressor = compressor
        self.feedback = feedback
        self.process_group = process_group
        self.seed = seed
        self.iteration = 0
        self.bytes_sent = 0
        self.buckets: dict[int, dict[str, torch.Tensor]] = {}
        # Which parameters each bucket's state belongs to: DDP rebuilds its buckets after the
        # first iteration, and a state must not follow an index onto other parameters.
        self._owners: dict[int, tuple[int, ...]] = {}
        # An LGreCo bound to each bucket's parameters, with its exchanges counted.
        self._layerwise: dict[int, tuple[tuple[int, ...], LGreCo, list[int]]] = {}

    def __repr__(self) -> str:
        name = self.compressor.name if self.feedback is None else self.feedback.name
        return (
            f"CompressedHookState({name}, iteration={self.iteration}, bytes_sent={self.bytes_sent})"
        )

    def _bucket_state(
        self, bucket: GradBucket, g: torch.Tensor, feedback: Feedback
    ) -> dict[str, torch.Tensor]:
        index = bucket.index()
        owners = (g.numel(), *(id(p) for p in bucket.parameters()))
        state = self.buckets.get(index)
        if (
            state is None
            or self._owners.get(index) != owners
            or any(t.device != g.device for t in state.values())
        ):
            state = feedback.init_state(g.numel(), g.device)
            self.buckets[index] = state
            self._owners[index] = owners
        return state

    def _bucket_compressor(self, bucket: GradBucket, g: torch.Tensor) -> tuple[Compressor, int]:
        """The compressor of this bucket and the index of this exchange of it (from 0).

        Only an :class:`LGreCo` is per bucket: bound to the bucket's parameters, in the
        buffer's order, and rebound (levels back at its default) when DDP rebuilds buckets.
        """
        if not isinstance(self.compressor, LGreCo):
            return self.compressor, 0
        index = bucket.index()
        owners = (g.numel(), *(id(p) for p in bucket.parameters()))
        entry = self._layerwise.get(index)
        if entry is None or entry[0] != owners:
            layers = [int(p.numel()) for p in bucket.parameters()]
            if sum(layers) != g.numel():
                raise InternalError(
                    f"bucket {index} holds {g.numel()} gradients but its parameters "
                    f"{sum(layers)}: the buffer is not their concatenation"
                )
            entry = (owners, self.compressor.for_layers(layers), [0])
            self._layerwise[index] = entry
        _, bound, count = entry
        count[0] += 1
        return bound, count[0] - 1


def _plan(
    compressor: LGreCo,
    outgoing: torch.Tensor,
    seed: int,
    group: ProcessGroup | None,
    world: int,
) -> int:
    """Re-plan ``compressor`` from every rank's error table; the bytes this rank sent.

    Two blocking all-gathers, rare (every ``compressor.every`` exchanges) and small beside a
    gradient bucket: the settings' digests, so that ranks configured differently fail with
    a clear error instead of exchanging payloads of different sizes, then the ``layers x
    candidates`` float64 error tables, added in rank order so every rank chooses the same
    levels.
    """
    import torch
    import torch.distributed as dist

    digest = torch.tensor(compressor.digest(), dtype=torch.float64, device=outgoing.device)
    digests = digest.new_empty(world * digest.numel())
    dist.all_gather_into_tensor(digests, digest, group=group)
    compressor.check_digests(digests.view(world, -1).cpu().numpy(), "compressor")
    errors = torch.from_numpy(compressor.measure(outgoing, seed=seed)).to(outgoing.device)
    flat = errors.reshape(-1)
    tables = flat.new_empty(world * flat.numel())
    dist.all_gather_into_tensor(tables, flat, group=group)
    compressor.plan(tables.view(world, -1).cpu().numpy())
    return int((flat.numel() + digest.numel()) * flat.element_size())


def compressed_hook(
    state: CompressedHookState, bucket: GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """Exchange one gradient bucket compressed; the hook :func:`ddp_comm_hook` returns.

    The bucket is taken as float32 (fp16, bf16 and fp64 buffers are converted and written
    back in their own dtype), passed through the feedback's ``outgoing`` when there is one,
    encoded, and all-gathered asynchronously. When the all-gather completes, every rank
    decodes every payload, sums them in rank order and divides by the world size, calls the
    feedback's ``commit`` (only then: a failed exchange leaves the state as it was), and
    writes the estimate into the bucket.

    Parameters
    ----------
    state
        The state from :func:`ddp_comm_hook`.
    bucket
        The gradient bucket DDP passes.

    Returns
    -------
    torch.futures.Future[torch.Tensor]
        Completes with the bucket's buffer, now holding the averaged estimate.

    Examples
    --------
    >>> from thrifty.diloco.compressors import RandomK
    >>> from thrifty.diloco._ddp_hook import compressed_hook, ddp_comm_hook
    >>> hook, _ = ddp_comm_hook(RandomK(0.1))
    >>> hook is compressed_hook
    True
    """
    import torch
    import torch.distributed as dist

    group = state.process_group if state.process_group is not None else dist.group.WORLD
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    feedback = state.feedback

    buffer = bucket.buffer()
    # `to` copies only when the dtype differs; an fp32 buffer is not written before commit.
    g = buffer.detach().reshape(-1).to(torch.float32)
    numel = g.numel()
    seed = exchange_seed(state.seed, bucket.index(), state.iteration)
    if bucket.is_last():
        state.iteration += 1

    feedback_state = state._bucket_state(bucket, g, feedback) if feedback is not None else None
    outgoing = (
        feedback.outgoing(g, feedback_state)
        if feedback is not None and feedback_state is not None
        else g
    )
    compressor, exchange_index = state._bucket_compressor(bucket, g)
    if isinstance(compressor, LGreCo) and compressor.due(exchange_index):
        state.bytes_sent += _plan(compressor, outgoing, seed, group, world)
    payload = compressor.encode(outgoing, seed=seed)
    size = payload.numel()
    gathered = payload.new_empty(world * size)
    work = dist.all_gather_into_tensor(gathered, payload, group=group, async_op=True)
    if work is None:
        raise InternalError("all_gather_into_tensor(async_op=True) returned no work handle")
    state.bytes_sent += size

    def finish(future: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        future.value()  # raises if the all-gather failed, before any state changes
        total = torch.zeros(numel, dtype=torch.float32, device=g.device)
        sent = total
        for peer in range(world):
            decoded = compressor.decode(gathered[peer * size : (peer + 1) * size], numel, seed=seed)
            if peer == rank:
                sent = decoded
            total += decoded
        mean = total.div_(world)
        if feedback is not None and feedback_state is not None:
            estimate = feedback.commit(g, feedback_state, sent, mean)
        else:
            estimate = mean
        buffer.copy_(estimate.view_as(buffer))
        return buffer

    return work.get_future().then(finish)


def ddp_comm_hook(
    compressor_or_feedback: Compressor | Feedback,
    *,
    process_group: ProcessGroup | None = None,
    seed: int = 0,
) -> tuple[
    Callable[[CompressedHookState, GradBucket], torch.futures.Future[torch.Tensor]],
    CompressedHookState,
]:
    """A DDP communication hook that sends compressed gradient buckets, and its state.

    Register the pair with ``ddp_model.register_comm_hook(state, hook)``. Each step, each
    bucket of ``n`` gradients costs one all-gather of ``payload_bytes(n)`` bytes per rank:
    ``state.bytes_sent`` grows by that much, summed over buckets. On a ring, an all-gather
    sends ``(world - 1) * payload_bytes(n)`` bytes from each rank while DDP's fp32
    all-reduce sends ``8 n (world - 1) / world``; compression pays when
    ``payload_bytes(n) < 8 n / world``, e.g. ``TopK(0.01)`` (``0.08 n`` bytes) below 100
    ranks, int8 (about ``1.06 n`` bytes with ``block=64``) below 7.

    Each exchange's seed is :func:`exchange_seed` of ``(seed, bucket index, iteration)``,
    the same on every rank. With error feedback, each bucket keeps its own state, created on
    first use and recreated when the bucket's parameters change (DDP rebuilds its buckets
    once, after the first iteration). Every rank averages the decoded payloads in rank
    order, so the gradients, and hence the parameters, stay bit-identical across ranks.

    Parameters
    ----------
    compressor_or_feedback
        A :class:`~thrifty.diloco.compressors.Compressor`, or a
        :class:`~thrifty.diloco.compressors.Feedback` such as ``EControl(TopK(0.01), eta=...)``.
    process_group
        The group to exchange on; ``None`` (the default) is the default group, looked up at
        each exchange.
    seed
        The base seed of the exchanges, the same on every rank.

    Returns
    -------
    hook : callable
        :func:`compressed_hook`, taking ``(state, bucket)``.
    state : CompressedHookState
        The state to register with it; ``state.bytes_sent`` counts the payload bytes sent.

    Examples
    --------
    >>> from thrifty.diloco.compressors import EControl, TopK
    >>> from thrifty.diloco._ddp_hook import ddp_comm_hook
    >>> hook, state = ddp_comm_hook(EControl(TopK(0.01), eta=0.01), seed=1)
    >>> state.compressor.name, state.feedback.name
    ('topk(0.01)', 'econtrol(topk(0.01), eta=0.01)')
    """
    require("torch")
    seed = check_seed(seed)
    if isinstance(compressor_or_feedback, Feedback):
        state = CompressedHookState(
            compressor_or_feedback.compressor,
            compressor_or_feedback,
            process_group=process_group,
            seed=seed,
        )
    elif isinstance(compressor_or_feedback, Compressor):
        state = CompressedHookState(
            compressor_or_feedback, None, process_group=process_group, seed=seed
        )
    else:
        raise InvalidArgumentError(
            "compressor_or_feedback must be a Compressor or a Feedback (ErrorFeedback, "
            f"EControl), got {type(compressor_or_feedback).__name__}",
            "compressor_or_feedback",
        )
    return _annotated(compressed_hook), state


def _annotated(
    hook: Callable[[CompressedHookState, GradBucket], torch.futures.Future[torch.Tensor]],
) -> Callable[[CompressedHookState, GradBucket], torch.futures.Future[torch.Tensor]]:
    import torch
    from torch._C._distributed_c10d import GradBucket  # what torch.distributed.GradBucket is

    # register_comm_hook compares the annotations with the classes themselves, and postponed
    # evaluation (``from __future__ import annotations``) leaves them as strings.
    hook.__annotations__.update(
        {
            "state": CompressedHookState,
            "bucket": GradBucket,
            "return": torch.futures.Future[torch.Tensor],
        }
    )
    return hook
