"""The shared workload of thrifty.diloco's quality tests, benchmarks and demo.

A small decoder-only transformer (:class:`TinyLM`) learns a generated language: a random
sparse order-2 Markov chain over a few dozen tokens (:class:`MarkovCorpus`). The corpus
needs no download, is the same for every seed on every platform, and its achievable loss
(the entropy floor) is computed exactly, so "how close to the best possible" is a number.

* :class:`WorkloadConfig` -- the defaults, tuned so that a DDP-equivalent run flattens
  near the entropy floor within a few hundred steps on one CPU thread.
* :func:`corpus`, :func:`batches`, :func:`global_batches` -- per-worker shards whose union
  at step ``t`` is the global batch a DDP run sees, with optional data heterogeneity.
* :func:`evaluation_set`, :func:`evaluate` -- a fixed held-out set and its mean
  cross-entropy (nats per token).
* :func:`make_model`, :func:`make_inner_optimizer`, :func:`train_step` -- one worker's
  model, its AdamW and one inner step.
* :func:`ddp_baseline` -- one process trained on the concatenation of all workers' batches,
  the same arithmetic as DDP with averaged gradients, with the bytes DDP would have sent.

torch is needed (``pip install 'thrifty[torch]'``). One concept per module: ``config``,
``corpus``, ``model`` and ``ddp_baseline``; this package gathers their names.

Examples
--------
>>> from benches.workloads import diloco_language_model as workload
>>> config = workload.WorkloadConfig(steps=5)
>>> inputs, targets = next(workload.batches(0, 4, config=config))
>>> tuple(inputs.shape), bool((inputs[:, 1:] == targets[:, :-1]).all())
((8, 32), True)
>>> model = workload.make_model(config)
>>> optimizer = workload.make_inner_optimizer(model, lr=config.lr)
>>> loss = workload.train_step(model, optimizer, (inputs, targets))
>>> 3.0 < loss < 4.0  # about log(vocab) at initialisation
True
"""

from __future__ import annotations

from benches.workloads.diloco_language_model.config import WorkloadConfig
from benches.workloads.diloco_language_model.corpus import (
    Batch,
    MarkovCorpus,
    batches,
    corpus,
    evaluation_set,
    global_batch,
    global_batches,
)
from benches.workloads.diloco_language_model.ddp_baseline import (
    BaselineResult,
    ddp_baseline,
    ring_all_reduce_bytes,
)
from benches.workloads.diloco_language_model.model import (
    TinyLM,
    evaluate,
    language_model_loss,
    make_inner_optimizer,
    make_model,
    train_step,
)

__all__ = [
    "BaselineResult",
    "Batch",
    "MarkovCorpus",
    "TinyLM",
    "WorkloadConfig",
    "batches",
    "corpus",
    "ddp_baseline",
    "evaluate",
    "evaluation_set",
    "global_batch",
    "global_batches",
    "language_model_loss",
    "make_inner_optimizer",
    "make_model",
    "ring_all_reduce_bytes",
    "train_step",
]
