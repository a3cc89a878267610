"""The settings of the language-model workload: corpus, model, optimizer and run length."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from thrifty._checks import check_int
from thrifty.errors import InvalidArgumentError

#: The corpora a workload can train on.
CORPORA = ("markov", "pydoc")
#: The text corpus's vocabulary: bytes.
TEXT_VOCAB = 256


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

    The real-text workload (:func:`pydoc_config`) sets ``corpus="pydoc"`` and its own
    model and batch sizes.

    Attributes
    ----------
    corpus : str
        ``"markov"``, the generated language (:class:`MarkovCorpus`, with a known entropy
        floor), or ``"pydoc"``, English text as bytes (:class:`TextCorpus`, ``vocab`` 256).
    shards : str
        Of the text corpus: ``"disjoint"`` (each worker reads its own contiguous part of the
        training text) or ``"shared"`` (every worker reads all of it).
    holdout : float
        Of the text corpus: the fraction of its bytes held out for evaluation.
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

    corpus: str = "markov"
    shards: str = "disjoint"
    holdout: float = 0.1
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
        if self.corpus not in CORPORA:
            raise InvalidArgumentError(
                f"corpus must be one of {CORPORA}, got {self.corpus!r}", "corpus"
            )
        if self.shards not in ("disjoint", "shared"):
            raise InvalidArgumentError(
                f"shards must be 'disjoint' or 'shared', got {self.shards!r}", "shards"
            )
        if not 0.0 < self.holdout < 1.0:
            raise InvalidArgumentError(
                f"holdout must be in (0, 1), got {self.holdout!r}", "holdout"
            )
        if self.corpus == "pydoc" and self.vocab != TEXT_VOCAB:
            raise InvalidArgumentError(
                f"vocab must be {TEXT_VOCAB} (bytes) for the pydoc corpus, got {self.vocab}",
                "vocab",
            )
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


def pydoc_config(**changes: Any) -> WorkloadConfig:
    """The real-text workload: :class:`TextCorpus` bytes and a TinyLM of about 1.1M weights.

    ``changes`` override any field. 4 layers of width 144 (4 heads) over windows of 128
    bytes, 16 windows per worker per step, AdamW at lr 1e-3. With the four workers' batches
    at once (:func:`ddp_baseline` with ``world_size=4``) the held-out loss reaches 1.88 nats
    per byte (2.71 bits) after 300 steps on one CPU thread, against 3.26 for the bytes'
    unigram frequencies and 2.49 for their bigrams (Python 3.11's topics, seed 0).

    Examples
    --------
    >>> from benches.workloads.diloco_language_model import pydoc_config
    >>> config = pydoc_config(steps=10)
    >>> config.corpus, config.vocab, config.steps
    ('pydoc', 256, 10)
    """
    settings: dict[str, Any] = {
        "corpus": "pydoc",
        "vocab": TEXT_VOCAB,
        "d_model": 144,
        "n_layers": 4,
        "n_heads": 4,
        "seq_len": 128,
        "batch_size": 16,
        "steps": 300,
        "lr": 1e-3,
        "eval_sequences": 128,
    }
    settings.update(changes)
    return WorkloadConfig(**settings)
