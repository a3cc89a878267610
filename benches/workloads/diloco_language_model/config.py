"""The settings of the language-model workload: corpus, model, optimizer and run length."""

from __future__ import annotations

import math
from dataclasses import dataclass

from thrifty._checks import check_int
from thrifty.errors import InvalidArgumentError


@dataclass(frozen=True)
class WorkloadConfig:
    """Defaults of the workload: corpus, model, optimizer and run length.

    ``batch_size`` is per worker: with ``world_size`` workers a step sees
    ``world_size * batch_size`` sequences of ``seq_len`` tokens.

    The defaults were tuned on one CPU thread with 4 workers (1024 tokens per step). The
    DDP-equivalent run (:func:`ddp_baseline`) drops from ``log(32) = 3.47`` to about 1.0
    nats in 40 steps (the previous token is learnt), then to about 0.6 by step 150 (the
    token before it, through attention), and flattens 0.08 above the entropy floor (0.50 for
    seed 0) by step 300, in 5-10 s. DiLoCo simulated in one process (inner AdamW as
    :func:`make_inner_optimizer`, outer Nesterov SGD with lr 0.7 and momentum 0.9, arXiv
    2311.08105) at the same 300 inner steps and tokens ends between 5% below and 1.5% above
    DDP's held-out loss for H = 20 and H = 50 over seeds 0-2 (the outer step averages away
    some of the constant learning rate's noise); four workers trained independently end
    about 17% above it.

    Attributes
    ----------
    vocab, support, branching : int
        The corpus: tokens, successors of each token, successors of each two-token context
        (see :class:`MarkovCorpus`).
    d_model, n_layers, n_heads, seq_len : int
        The model (see :class:`TinyLM`); ``seq_len`` is also the training sequence length.
    tied : bool
        Whether the head shares the token embedding (untied learns faster here).
    batch_size : int
        Sequences per worker per step.
    steps : int
        Inner steps of a run.
    lr, weight_decay : float
        Of the inner AdamW (:func:`make_inner_optimizer`).
    seed : int
        Seeds the corpus, the data streams, the held-out set and the initial weights.
    eval_sequences : int
        Size of the held-out set.

    Examples
    --------
    >>> from benches.workloads.diloco_language_model import WorkloadConfig
    >>> config = WorkloadConfig()
    >>> config.vocab, config.seq_len, config.batch_size, config.steps
    (32, 32, 8, 300)
    """

    vocab: int = 32
    support: int = 4
    branching: int = 2
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    seq_len: int = 32
    tied: bool = False
    batch_size: int = 8
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 0.1
    seed: int = 0
    eval_sequences: int = 512

    def __post_init__(self) -> None:
        for name in (
            "vocab",
            "branching",
            "support",
            "d_model",
            "n_layers",
            "n_heads",
            "seq_len",
            "batch_size",
            "steps",
            "eval_sequences",
        ):
            check_int(getattr(self, name), name, minimum=1)
        if self.vocab < 2:
            raise InvalidArgumentError(f"vocab must be at least 2, got {self.vocab}", "vocab")
        if self.support > self.vocab:
            raise InvalidArgumentError(
                f"support must be at most vocab ({self.vocab}), got {self.support}", "support"
            )
        if self.branching > self.support:
            raise InvalidArgumentError(
                f"branching must be at most support ({self.support}), got {self.branching}",
                "branching",
            )
        if self.d_model % self.n_heads:
            raise InvalidArgumentError(
                f"d_model must be a multiple of n_heads ({self.n_heads}), got {self.d_model}",
                "d_model",
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidArgumentError(f"lr must be positive and finite, got {self.lr}", "lr")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise InvalidArgumentError(
                f"weight_decay must be non-negative and finite, got {self.weight_decay}",
                "weight_decay",
            )
