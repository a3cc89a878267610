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

torch is needed (``pip install 'thrifty[torch]'``); ``import thrifty.diloco`` does not import
this module.

Examples
--------
>>> from thrifty.diloco import workload
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

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thrifty._checks import check_int
from thrifty._extras import require
from thrifty.errors import InvalidArgumentError

try:
    import torch
    from torch import nn
    from torch.nn import functional
except ImportError:  # pragma: no cover - the message names the extra to install
    require("torch")
    raise

__all__ = [
    "BaselineResult",
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

Batch = tuple[torch.Tensor, torch.Tensor]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]

# Spawn keys that keep the corpus, the training stream and the held-out set independent
# while all derive from one seed.
_CORPUS_KEY = 0
_STREAM_KEY = 1
_EVAL_KEY = 2

# At heterogeneity 1 a worker's own tokens are this many times likelier than in the shared
# chain. A tilt rather than a restriction keeps every successor possible, so no worker is
# trapped in a cycle of its own tokens and every shard still visits every context.
_HETEROGENEITY_TILT = 16.0


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
    >>> from thrifty.diloco.workload import WorkloadConfig
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


# ---------------------------------------------------------------------------------------
# The corpus


def _check_worker(worker: int, world_size: int) -> None:
    check_int(world_size, "world_size", minimum=1)
    check_int(worker, "worker", minimum=0, maximum=world_size - 1)


def _check_heterogeneity(heterogeneity: float) -> float:
    value = float(heterogeneity)
    if not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(
            f"heterogeneity must be in [0, 1], got {heterogeneity!r}", "heterogeneity"
        )
    return value


def _entropy(probabilities: FloatArray, axis: int = -1) -> FloatArray:
    safe = np.where(probabilities > 0, probabilities, 1.0)
    result: FloatArray = -(probabilities * np.log(safe)).sum(axis=axis)
    return result


class MarkovCorpus:
    """A random sparse order-2 Markov chain over ``vocab`` tokens.

    Each token ``b`` has ``support`` possible successors; each context ``(a, b)`` of the two
    previous tokens keeps ``branching`` of them, with probabilities drawn from a flat
    Dirichlet. Sequences start from the stationary distribution of the pair chain, so every
    position of every sequence has the same law and the best achievable mean cross-entropy
    is known exactly (:meth:`entropy_floor`).

    Heterogeneous shards: with ``heterogeneity = h``, worker ``w`` of ``n`` draws from ``P``
    with the probability of each next token ``c`` with ``c % n == w`` multiplied by
    ``16 ** h``, then renormalised. Every shard keeps the support of ``P``, so it visits the
    same contexts, but at ``h = 1`` each worker sees its own tokens far more often (the total
    variation between two workers' token frequencies is about 0.4 with the defaults). The
    held-out set always follows ``P``.

    Parameters
    ----------
    vocab : int
        Number of tokens.
    branching : int, optional
        Number of possible next tokens of each two-token context.
    support : int, optional
        Number of possible next tokens of each token (``branching <= support <= vocab``).
    seed : int, optional
        Seed of the transition table.

    Examples
    --------
    >>> from thrifty.diloco.workload import MarkovCorpus
    >>> chain = MarkovCorpus(32, branching=2, support=4, seed=0)
    >>> chain.transitions.shape
    (32, 32, 32)
    >>> round(chain.entropy_floor(32), 3)  # nats per token, against log(32) = 3.466
    0.504
    """

    def __init__(self, vocab: int, *, branching: int = 2, support: int = 4, seed: int = 0) -> None:
        WorkloadConfig(vocab=vocab, branching=branching, support=support)  # validates them
        self.support = support
        self.vocab = vocab
        self.branching = branching
        self.seed = seed
        rng = np.random.default_rng([seed, _CORPUS_KEY])
        # Token b's possible successors form a set of `support` tokens; each context (a, b)
        # picks `branching` of them. The previous token alone then narrows the next one a
        # lot (learnt in tens of steps), and the one before it narrows it further (learnt
        # through attention, later): a loss curve with the two phases of real LM training.
        pool = np.argsort(rng.random((vocab, vocab)), axis=-1)[:, :support]
        chosen = np.argsort(rng.random((vocab, vocab, support)), axis=-1)[..., :branching]
        successors = pool[np.arange(vocab)[None, :, None], chosen]
        weights = rng.dirichlet(np.ones(branching), size=(vocab, vocab))
        transitions = np.zeros((vocab, vocab, vocab))
        np.put_along_axis(transitions, successors, weights, axis=-1)
        self.transitions: FloatArray = transitions
        self._tables: dict[tuple[int, int, float], tuple[FloatArray, FloatArray]] = {}

    def _table(
        self, worker: int, world_size: int, heterogeneity: float
    ) -> tuple[FloatArray, FloatArray]:
        """Transitions and stationary pair distribution of one worker's shard (cached)."""
        if heterogeneity == 0.0:
            worker, world_size = 0, 1
        key = (worker, world_size, heterogeneity)
        if key not in self._tables:
            transitions = self.transitions
            if heterogeneity > 0.0:
                own = (np.arange(self.vocab) % world_size) == worker
                tilted = transitions * _HETEROGENEITY_TILT ** (heterogeneity * own)
                transitions = tilted / tilted.sum(axis=-1, keepdims=True)
            self._tables[key] = (transitions, _stationary_pairs(transitions))
        return self._tables[key]

    def stationary(
        self, *, worker: int = 0, world_size: int = 1, heterogeneity: float = 0.0
    ) -> FloatArray:
        """The stationary distribution of token pairs ``(x_t, x_{t+1})``, shape (vocab, vocab)."""
        _check_worker(worker, world_size)
        pairs = self._table(worker, world_size, _check_heterogeneity(heterogeneity))[1]
        result: FloatArray = pairs.copy()
        return result

    def entropy_floor(
        self,
        seq_len: int,
        *,
        worker: int = 0,
        world_size: int = 1,
        heterogeneity: float = 0.0,
    ) -> float:
        """The least achievable mean cross-entropy (nats per token) on sequences of ``seq_len``.

        The first target is predicted from one token, ``H(X_1 | X_0)``; the others from two,
        ``H(X_t | X_{t-2}, X_{t-1})``; the floor is their mean over the ``seq_len`` targets.
        """
        if not isinstance(seq_len, int) or seq_len < 1:
            raise InvalidArgumentError(
                f"seq_len must be a positive integer, got {seq_len!r}", "seq_len"
            )
        _check_worker(worker, world_size)
        transitions, pairs = self._table(worker, world_size, _check_heterogeneity(heterogeneity))
        order2 = float((pairs * _entropy(transitions)).sum())
        first = _entropy(pairs.reshape(-1))[()] - _entropy(pairs.sum(axis=1))[()]
        return (float(first) + (seq_len - 1) * order2) / seq_len

    def sample(
        self,
        uniforms: FloatArray,
        *,
        worker: int = 0,
        world_size: int = 1,
        heterogeneity: float = 0.0,
    ) -> torch.Tensor:
        """Sequences driven by ``uniforms`` of shape (n, length): int64 tokens, shape (n, length+1).

        Column 0 of ``uniforms`` picks the first pair from the stationary distribution; each
        further column picks one next token by inverting the conditional CDF, so a row's
        tokens depend on that row's uniforms alone.
        """
        _check_worker(worker, world_size)
        transitions, pairs = self._table(worker, world_size, _check_heterogeneity(heterogeneity))
        count, length = uniforms.shape
        vocab = self.vocab
        tokens = np.empty((count, length + 1), dtype=np.int64)
        pair_cdf = np.cumsum(pairs.reshape(-1))
        first = np.minimum(
            np.searchsorted(pair_cdf, uniforms[:, 0] * pair_cdf[-1], "right"), vocab * vocab - 1
        )
        tokens[:, 0], tokens[:, 1] = np.divmod(first, vocab)
        cdf = np.cumsum(transitions, axis=-1)
        for position in range(2, length + 1):
            rows = cdf[tokens[:, position - 2], tokens[:, position - 1]]
            draws = uniforms[:, position - 1, None] * rows[:, -1:]
            tokens[:, position] = np.minimum((rows <= draws).sum(axis=1), vocab - 1)
        return torch.from_numpy(tokens)

    def batches(
        self,
        worker: int,
        world_size: int,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        heterogeneity: float = 0.0,
        start_step: int = 0,
    ) -> Iterator[Batch]:
        """Worker ``worker``'s endless stream of ``(inputs, targets)``, each (batch_size, seq_len).

        At step ``t`` the global batch is ``world_size * batch_size`` sequences, drawn from
        ``seed`` and ``t`` alone; worker ``w`` takes rows ``[w * batch_size, (w + 1) *
        batch_size)``. So concatenating every worker's batch of step ``t`` in worker order
        gives :meth:`global_batch` -- the batch a DDP run sees -- and resuming at
        ``start_step`` continues the same stream.
        """
        _check_worker(worker, world_size)
        heterogeneity = _check_heterogeneity(heterogeneity)
        WorkloadConfig(batch_size=batch_size, seq_len=seq_len)  # validates both
        if not isinstance(start_step, int) or start_step < 0:
            raise InvalidArgumentError(
                f"start_step must be a non-negative integer, got {start_step!r}", "start_step"
            )
        return self._stream(
            worker, world_size, batch_size, seq_len, seed, heterogeneity, start_step
        )

    def _stream(
        self,
        worker: int,
        world_size: int,
        batch_size: int,
        seq_len: int,
        seed: int,
        heterogeneity: float,
        step: int,
    ) -> Iterator[Batch]:
        rows = slice(worker * batch_size, (worker + 1) * batch_size)
        while True:
            uniforms = self._uniforms(step, world_size * batch_size, seq_len, seed)[rows]
            tokens = self.sample(
                uniforms, worker=worker, world_size=world_size, heterogeneity=heterogeneity
            )
            yield tokens[:, :-1], tokens[:, 1:]
            step += 1

    def global_batch(
        self,
        step: int,
        world_size: int,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        heterogeneity: float = 0.0,
    ) -> Batch:
        """The union, in worker order, of every worker's batch at ``step``."""
        parts = [
            next(
                self.batches(
                    worker,
                    world_size,
                    batch_size=batch_size,
                    seq_len=seq_len,
                    seed=seed,
                    heterogeneity=heterogeneity,
                    start_step=step,
                )
            )
            for worker in range(world_size)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    @staticmethod
    def _uniforms(step: int, rows: int, seq_len: int, seed: int) -> FloatArray:
        # One generator per (seed, step), so any worker can jump to any step directly.
        result: FloatArray = np.random.default_rng([seed, _STREAM_KEY, step]).random(
            (rows, seq_len)
        )
        return result


def _stationary_pairs(transitions: FloatArray) -> FloatArray:
    """Stationary law of the pair chain ``(a, b) -> (b, c)``, by lazy power iteration.

    The lazy chain ``(I + P) / 2`` has the same stationary law and is aperiodic, so the
    iteration converges even where the sparse chain has a period.
    """
    vocab = transitions.shape[0]
    pairs = np.full((vocab, vocab), 1.0 / vocab**2)
    for _ in range(20_000):
        moved = np.einsum("ab,abc->bc", pairs, transitions)
        updated = 0.5 * (pairs + moved)
        if np.abs(updated - pairs).sum() < 1e-13:
            pairs = updated
            break
        pairs = updated
    result: FloatArray = pairs / pairs.sum()
    return result


_CORPORA: dict[tuple[int, int, int, int], MarkovCorpus] = {}


def corpus(config: WorkloadConfig | None = None) -> MarkovCorpus:
    """The corpus of ``config`` (``vocab``, ``branching``, ``seed``), built once per process.

    Examples
    --------
    >>> from thrifty.diloco import workload
    >>> workload.corpus() is workload.corpus()
    True
    """
    config = config or WorkloadConfig()
    key = (config.vocab, config.branching, config.support, config.seed)
    if key not in _CORPORA:
        _CORPORA[key] = MarkovCorpus(
            config.vocab, branching=config.branching, support=config.support, seed=config.seed
        )
    return _CORPORA[key]


def batches(
    worker: int,
    world_size: int,
    *,
    config: WorkloadConfig | None = None,
    heterogeneity: float = 0.0,
    start_step: int = 0,
) -> Iterator[Batch]:
    """Worker ``worker``'s endless batch stream under ``config``; see :meth:`MarkovCorpus.batches`.

    Parameters
    ----------
    worker : int
        This worker's rank, in ``[0, world_size)``.
    world_size : int
        Number of workers; the global batch is ``world_size * config.batch_size`` sequences.
    config : WorkloadConfig, optional
        Corpus, ``batch_size``, ``seq_len`` and ``seed``; the defaults when omitted.
    heterogeneity : float, optional
        In ``[0, 1]``: how far each worker's data is skewed towards its own tokens.
    start_step : int, optional
        The step to start from (resuming gives the same batches as never stopping).

    Returns
    -------
    Iterator[tuple[torch.Tensor, torch.Tensor]]
        ``(inputs, targets)``, int64, each ``(batch_size, seq_len)``; targets are the inputs
        shifted by one token.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco import workload
    >>> config = workload.WorkloadConfig(batch_size=2)
    >>> mine = next(workload.batches(1, 2, config=config))[0]
    >>> union = workload.global_batch(0, 2, config=config)[0]
    >>> bool(torch.equal(union[2:], mine))
    True
    """
    config = config or WorkloadConfig()
    return corpus(config).batches(
        worker,
        world_size,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        seed=config.seed,
        heterogeneity=heterogeneity,
        start_step=start_step,
    )


def global_batch(
    step: int,
    world_size: int,
    *,
    config: WorkloadConfig | None = None,
    heterogeneity: float = 0.0,
) -> Batch:
    """All workers' batches of ``step`` concatenated in worker order: what DDP trains on."""
    config = config or WorkloadConfig()
    return corpus(config).global_batch(
        step,
        world_size,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        seed=config.seed,
        heterogeneity=heterogeneity,
    )


def global_batches(
    world_size: int,
    *,
    config: WorkloadConfig | None = None,
    heterogeneity: float = 0.0,
    start_step: int = 0,
) -> Iterator[Batch]:
    """The endless stream of :func:`global_batch`, from ``start_step``."""
    config = config or WorkloadConfig()
    streams = [
        batches(w, world_size, config=config, heterogeneity=heterogeneity, start_step=start_step)
        for w in range(world_size)
    ]
    while True:
        parts = [next(stream) for stream in streams]
        yield torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def evaluation_set(config: WorkloadConfig | None = None) -> Batch:
    """The fixed held-out set: ``config.eval_sequences`` sequences from the unskewed chain.

    Drawn from its own stream of ``config.seed``, so no training batch of any worker,
    heterogeneous or not, shares its randomness.

    Examples
    --------
    >>> from thrifty.diloco import workload
    >>> inputs, targets = workload.evaluation_set()
    >>> tuple(inputs.shape)
    (512, 32)
    """
    config = config or WorkloadConfig()
    uniforms = np.random.default_rng([config.seed, _EVAL_KEY]).random(
        (config.eval_sequences, config.seq_len)
    )
    tokens = corpus(config).sample(uniforms)
    return tokens[:, :-1], tokens[:, 1:]


# ---------------------------------------------------------------------------------------
# The model


class _Block(nn.Module):
    """A pre-norm transformer block: causal self-attention, then a GELU MLP, each residual."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attention_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.projection = nn.Linear(d_model, d_model)
        self.mlp_norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.attention_norm(x))
        qkv = qkv.view(batch, length, 3, self.n_heads, width // self.n_heads).transpose(1, 3)
        query, key, value = qkv.unbind(dim=2)
        attended = functional.scaled_dot_product_attention(query, key, value, is_causal=True)
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, length, width))
        result: torch.Tensor = x + self.mlp(self.mlp_norm(x))
        return result


class TinyLM(nn.Module):
    """A small decoder-only transformer language model, deterministic from ``seed``.

    Token and learned positional embeddings, ``n_layers`` pre-norm blocks in the
    ``nn.ModuleList`` ``blocks`` (so a fragment can be one block), a final LayerNorm and a
    linear head, tied to the token embedding when ``tied``. Initialisation follows GPT-2:
    normal(0, 0.02) weights, residual projections scaled by ``1 / sqrt(2 * n_layers)``,
    drawn from a private generator, so building a model leaves torch's global RNG as it was.

    Parameters
    ----------
    vocab, d_model, n_layers, n_heads, seq_len : int
        Vocabulary, width, depth, attention heads and the longest input.
    seed : int, optional
        Seed of the initial weights.
    tied : bool, optional
        Whether the head shares the token embedding's weights.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.workload import TinyLM
    >>> model = TinyLM(32, 64, 2, 4, 32, seed=0)
    >>> tuple(model(torch.zeros(3, 10, dtype=torch.long)).shape), len(model.blocks)
    ((3, 10, 32), 2)
    """

    def __init__(
        self,
        vocab: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        seq_len: int,
        *,
        seed: int = 0,
        tied: bool = True,
    ) -> None:
        WorkloadConfig(
            vocab=vocab, d_model=d_model, n_layers=n_layers, n_heads=n_heads, seq_len=seq_len
        )
        super().__init__()
        self.seq_len = seq_len
        # Construction draws default inits from the global RNG; fork it so that building a
        # model has no side effect, then overwrite everything from the private generator.
        with torch.random.fork_rng(devices=[]):
            self.token_embedding = nn.Embedding(vocab, d_model)
            self.position_embedding = nn.Embedding(seq_len, d_model)
            self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab, bias=False)
        if tied:
            self.head.weight = self.token_embedding.weight
        generator = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * n_layers)
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
                elif "norm" in name:
                    parameter.fill_(1.0)
                elif name.endswith(("projection.weight", "mlp.2.weight")):
                    parameter.normal_(0.0, residual_std, generator=generator)
                else:
                    parameter.normal_(0.0, 0.02, generator=generator)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of the next token at each position, shape ``inputs.shape + (vocab,)``."""
        length = inputs.shape[-1]
        if length > self.seq_len:
            raise InvalidArgumentError(
                f"inputs must have at most seq_len ({self.seq_len}) tokens, got {length}",
                "inputs",
            )
        positions = torch.arange(length, device=inputs.device)
        x = self.token_embedding(inputs) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits


def make_model(config: WorkloadConfig | None = None, *, seed: int | None = None) -> TinyLM:
    """The :class:`TinyLM` of ``config``, initialised from ``seed`` (``config.seed`` if None).

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco import workload
    >>> a, b = workload.make_model(), workload.make_model()
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    config = config or WorkloadConfig()
    return TinyLM(
        config.vocab,
        config.d_model,
        config.n_layers,
        config.n_heads,
        config.seq_len,
        seed=config.seed if seed is None else seed,
        tied=config.tied,
    )


def make_inner_optimizer(
    model: nn.Module,
    *,
    lr: float = WorkloadConfig.lr,
    weight_decay: float = WorkloadConfig.weight_decay,
) -> torch.optim.AdamW:
    """AdamW for the workload: betas (0.9, 0.95), weight decay on matrices only.

    DiLoCo's inner optimizer is AdamW with weight decay 0.1 (arXiv 2311.08105); the decay
    skips parameters of dimension below 2 (biases, LayerNorm gains), as in GPT training.

    Examples
    --------
    >>> from thrifty.diloco import workload
    >>> optimizer = workload.make_inner_optimizer(workload.make_model(), lr=1e-3)
    >>> [group["weight_decay"] for group in optimizer.param_groups]
    [0.1, 0.0]
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise InvalidArgumentError(f"lr must be positive and finite, got {lr}", "lr")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise InvalidArgumentError(
            f"weight_decay must be non-negative and finite, got {weight_decay}", "weight_decay"
        )
    decayed = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    others = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decayed, "weight_decay": weight_decay},
            {"params": others, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )


def language_model_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per token) of ``model`` on ``batch``."""
    inputs, targets = batch
    logits = model(inputs)
    loss: torch.Tensor = functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    )
    return loss


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> float:
    """One inner step: zero the gradients, backpropagate the mean loss, step; returns the loss.

    Examples
    --------
    >>> from thrifty.diloco import workload
    >>> config = workload.WorkloadConfig(batch_size=4, seq_len=16)
    >>> model = workload.make_model(config)
    >>> optimizer = workload.make_inner_optimizer(model, lr=1e-2)
    >>> stream = workload.batches(0, 1, config=config)
    >>> first = workload.train_step(model, optimizer, next(stream))
    >>> later = [workload.train_step(model, optimizer, next(stream)) for _ in range(10)]
    >>> later[-1] < first - 0.5
    True
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = language_model_loss(model, batch)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return float(loss.detach())


def evaluate(
    model: nn.Module, *, config: WorkloadConfig | None = None, data: Batch | None = None
) -> float:
    """Mean cross-entropy (nats per token) of ``model`` on the held-out set.

    Parameters
    ----------
    model : torch.nn.Module
        Maps int64 inputs (batch, seq_len) to logits (batch, seq_len, vocab).
    config : WorkloadConfig, optional
        Picks :func:`evaluation_set` when ``data`` is None.
    data : tuple of torch.Tensor, optional
        ``(inputs, targets)`` to evaluate on instead.

    Examples
    --------
    >>> import math
    >>> from thrifty.diloco import workload
    >>> loss = workload.evaluate(workload.make_model())
    >>> abs(loss - math.log(32)) < 0.1  # a fresh model is close to uniform
    True
    """
    data = data if data is not None else evaluation_set(config)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float(language_model_loss(model, data))
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------
# The DDP baseline


def ring_all_reduce_bytes(n_params: int, world_size: int, *, bytes_per_element: int = 4) -> float:
    """Bytes each worker sends in one ring all-reduce of ``n_params`` elements.

    A ring all-reduce is a reduce-scatter then an all-gather, each ``n - 1`` steps of
    ``1 / n`` of the buffer, so each worker sends ``2 (n - 1) / n`` buffers -- the factor
    nccl-tests calls busbw / algbw.

    Examples
    --------
    >>> from thrifty.diloco.workload import ring_all_reduce_bytes
    >>> ring_all_reduce_bytes(1000, 4)
    6000.0
    """
    _check_worker(0, world_size)
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
    entropy_floor : float
        :meth:`MarkovCorpus.entropy_floor` of the held-out set.
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
    entropy_floor: float
    seconds: float
    model: TinyLM
    eval_losses: dict[int, float] = field(default_factory=dict)


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
    >>> from thrifty.diloco import workload
    >>> config = workload.WorkloadConfig(steps=10, batch_size=2, seq_len=16, eval_sequences=8)
    >>> result = workload.ddp_baseline(world_size=2, config=config)
    >>> len(result.train_losses), result.train_losses[-1] < result.train_losses[0]
    (10, True)
    >>> result.bytes_per_step == 4 * result.n_params  # 2 (n - 1) / n = 1 for two workers
    True
    """
    config = config or WorkloadConfig()
    _check_worker(0, world_size)
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
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_step = ring_all_reduce_bytes(n_params, world_size)
    return BaselineResult(
        train_losses=train_losses,
        eval_loss=eval_loss,
        n_params=n_params,
        bytes_per_step=per_step,
        bytes_sent=per_step * steps,
        entropy_floor=corpus(config).entropy_floor(config.seq_len),
        seconds=time.perf_counter() - start,
        model=model,
        eval_losses=eval_losses,
    )
