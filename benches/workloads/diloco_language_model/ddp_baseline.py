"""The DDP baseline: one process trained on every worker's batches at once, and the bytes
a real DDP ring all-reduce would have sent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from benches.workloads.diloco_language_model.config import WorkloadConfig
from benches.workloads.diloco_language_model.corpus import (
    check_worker,
    evaluation_set,
    global_batches,
    reference_losses,
)
from benches.workloads.diloco_language_model.model import (
    TinyLM,
    evaluate,
    make_inner_optimizer,
    make_model,
    train_step,
)
from thrifty.errors import InvalidArgumentError


def ring_all_reduce_bytes(n_params: int, world_size: int, *, bytes_per_element: int = 4) -> float:
    """Bytes each worker sends in one ring all-reduce of ``n_params`` elements.

    A ring all-reduce is a reduce-scatter then an all-gather, each ``n - 1`` steps of
    ``1 / n`` of the buffer, so each worker sends ``2 (n - 1) / n`` buffers -- the factor
    nccl-tests calls busbw / algbw.

    Examples
    --------
    >>> from benches.workloads.diloco_language_model import ring_all_reduce_bytes
    >>> ring_all_reduce_bytes(1000, 4)
    6000.0
    """
    check_worker(0, world_size)
    return 2.0 * (world_size - 1) / world_size * bytes_per_element * n_params


@dataclass
class BaselineResult:
    """What :func:`ddp_baseline` measured.

    Attributes
    ----------
    train_losses : list of float
        Mean training loss over the global batch at each step, before that step's update.
    eval_loss : float
        Held-out loss (nats per token) after the last step.
    eval_losses : dict of int to float
        Held-out loss after each step in ``eval_every`` (steps counted from 1), if asked.
    n_params : int
        Trainable parameters (a tied weight counted once).
    bytes_per_step : float
        Bytes each worker of a real DDP ring all-reduce of fp32 gradients would send per
        step: ``2 (n - 1) / n * 4 * n_params``.
    bytes_sent : float
        ``bytes_per_step * steps``.
    entropy_floor : float or None
        :meth:`MarkovCorpus.entropy_floor` of the held-out set; None for the text corpus,
        whose floor is unknown.
    references : dict of str to float
        :func:`reference_losses` of the workload.
    seconds : float
        Wall time of the run.
    model : TinyLM
        The trained model.
    """

    train_losses: list[float]
    eval_loss: float
    n_params: int
    bytes_per_step: float
    bytes_sent: float
    entropy_floor: float | None
    seconds: float
    model: TinyLM
    eval_losses: dict[int, float] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)


def ddp_baseline(
    *,
    world_size: int,
    steps: int | None = None,
    config: WorkloadConfig | None = None,
    heterogeneity: float = 0.0,
    eval_every: int | None = None,
) -> BaselineResult:
    """Train one process on every worker's batches at once: DDP, computed without processes.

    At each step the loss is the mean over the global batch (the concatenation of all
    workers' batches of that step), which has the same gradient as DDP's average of the
    workers' mean-loss gradients when all shards have the same size. So this is the
    baseline that distributed runs compare with at the same number of steps and tokens.

    Parameters
    ----------
    world_size : int
        Number of simulated workers.
    steps : int, optional
        Optimizer steps; ``config.steps`` when None.
    config : WorkloadConfig, optional
        The workload; the defaults when omitted.
    heterogeneity : float, optional
        Passed to :func:`batches`.
    eval_every : int, optional
        Also record the held-out loss every ``eval_every`` steps.

    Returns
    -------
    BaselineResult

    Examples
    --------
    >>> from benches.workloads import diloco_language_model as workload
    >>> config = workload.WorkloadConfig(steps=10, batch_size=2, seq_len=16, eval_sequences=8)
    >>> result = workload.ddp_baseline(world_size=2, config=config)
    >>> len(result.train_losses), result.train_losses[-1] < result.train_losses[0]
    (10, True)
    >>> result.bytes_per_step == 4 * result.n_params  # 2 (n - 1) / n = 1 for two workers
    True
    """
    config = config or WorkloadConfig()
    check_worker(0, world_size)
    steps = config.steps if steps is None else steps
    if not isinstance(steps, int) or steps < 0:
        raise InvalidArgumentError(f"steps must be a non-negative integer, got {steps!r}", "steps")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise InvalidArgumentError(
            f"eval_every must be a positive integer or None, got {eval_every!r}", "eval_every"
        )
    start = time.perf_counter()
    model = make_model(config)
    optimizer = make_inner_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
    data = evaluation_set(config)
    stream = global_batches(world_size, config=config, heterogeneity=heterogeneity)
    train_losses: list[float] = []
    eval_losses: dict[int, float] = {}
    for step in range(1, steps + 1):
        train_losses.append(train_step(model, optimizer, next(stream)))
        if eval_every is not None and step % eval_every == 0:
            eval_losses[step] = evaluate(model, data=data)
    eval_loss = evaluate(model, data=data)
    references = reference_losses(config)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_step = ring_all_reduce_bytes(n_params, world_size)
    return BaselineResult(
        train_losses=train_losses,
        eval_loss=eval_loss,
        n_params=n_params,
        bytes_per_step=per_step,
        bytes_sent=per_step * steps,
        entropy_floor=references.get("entropy floor"),
        seconds=time.perf_counter() - start,
        model=model,
        eval_losses=eval_losses,
        references=references,
    )
