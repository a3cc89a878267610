"""The shared workload of thrifty.diloco's quality tests, benchmarks and demo.

A small decoder-only transformer (:class:`TinyLM`) learns one of two corpora, neither of
which needs a download:

* ``"markov"`` (the :class:`WorkloadConfig` defaults): a generated language, a random
  sparse order-2 Markov chain over a few dozen tokens (:class:`MarkovCorpus`). It is the
  same for every seed on every platform and its achievable loss (the entropy floor) is
  computed exactly, so "how close to the best possible" is a number; the quality tests use
  it.
* ``"pydoc"`` (:func:`pydoc_config`): real English text, the documentation topics shipped
  with Python, as bytes (:class:`TextCorpus`), learnt by a TinyLM of 1.1M weights; the
  benchmark uses it.

* :class:`WorkloadConfig` -- the defaults, tuned so that a DDP-equivalent run flattens
  near the entropy floor within a few hundred steps on one CPU thread;
  :func:`pydoc_config` -- those of the text.
* :func:`corpus`, :func:`batches`, :func:`global_batches` -- per-worker shards whose union
  at step ``t`` is the global batch a DDP run sees, with optional data heterogeneity.
* :func:`evaluation_set`, :func:`evaluate` -- a fixed held-out set and its mean
  cross-entropy (nats per token); :func:`reference_losses` -- the entropy floor, or the
  text's unigram and bigram baselines.
* :func:`make_model`, :func:`make_inner_optimizer`, :func:`train_step` -- one worker's
  model, its AdamW and one inner step.
* :func:`ddp_baseline` -- one process trained on the concatenation of all workers' batches,
  the same arithmetic as DDP with averaged gradients, with the bytes DDP would have sent.

torch is needed (``pip install 'thrifty[torch]'``). One concept per module: ``config``,
``corpus``, ``text``, ``model`` and ``ddp_baseline``; this package gathers their names.

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

from benches.workloads.diloco_language_model.config import WorkloadConfig, pydoc_config
from benches.workloads.diloco_language_model.corpus import (
    Batch,
    MarkovCorpus,
    batches,
    corpus,
    evaluation_set,
    global_batch,
    global_batches,
    reference_losses,
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
from benches.workloads.diloco_language_model.text import TextCorpus, text_corpus

__all__ = [
    "BaselineResult",
    "Batch",
    "MarkovCorpus",
    "TextCorpus",
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
    "pydoc_config",
    "reference_losses",
    "ring_all_reduce_bytes",
    "text_corpus",
    "train_step",
]
