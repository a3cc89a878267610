"""The generated language: a sparse order-2 Markov chain, its shards and held-out set.

The corpus needs no download, is the same for every seed on every platform, and its
achievable loss (the entropy floor) is computed exactly. Worker shards union, at each step,
to the global batch a DDP run sees, with optional data heterogeneity.

:func:`batches`, :func:`global_batch`, :func:`evaluation_set` and :func:`reference_losses`
serve either corpus, as ``config.corpus`` says: this chain or the English text of
:mod:`~benches.workloads.diloco_language_model.text`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from benches.workloads.diloco_language_model.config import WorkloadConfig
from benches.workloads.diloco_language_model.text import text_corpus
from thrifty._checks import check_int
from thrifty._extras import require
from thrifty.errors import InvalidArgumentError

try:
    import torch
except ImportError:  # pragma: no cover - the message names the extra to install
    require("torch")
    raise

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


def check_worker(worker: int, world_size: int) -> None:
    check_int(world_size, "world_size", minimum=1)
    check_int(worker, "worker", minimum=0, maximum=world_size - 1)


def _check_heterogeneity(heterogeneity: float) -> float:
    value = float(heterogeneity)
    if not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(
            f"heterogeneity must be in [0, 1], got {heterogeneity!r}", "heterogeneity"
        )
    return value


def _check_no_heterogeneity(heterogeneity: float) -> None:
    # The text's shards differ by what they are about; there is no knob to skew them.
    if _check_heterogeneity(heterogeneity) != 0.0:
        raise InvalidArgumentError(
            "heterogeneity applies to the markov corpus only; the pydoc corpus's disjoint "
            f"shards are its own, got {heterogeneity!r}",
            "heterogeneity",
        )


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
    >>> from benches.workloads.diloco_language_model import MarkovCorpus
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
        check_worker(worker, world_size)
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
        check_worker(worker, world_size)
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
        check_worker(worker, world_size)
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
        check_worker(worker, world_size)
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
    """The Markov corpus of ``config`` (``vocab``, ``branching``, ``seed``), built once per process.

    Whatever ``config.corpus`` is: the text corpus is :func:`text_corpus`.

    Examples
    --------
    >>> from benches.workloads import diloco_language_model as workload
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
        In ``[0, 1]``: how far each worker's data is skewed towards its own tokens (the
        Markov corpus only; the text corpus takes ``config.shards``).
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
    >>> from benches.workloads import diloco_language_model as workload
    >>> config = workload.WorkloadConfig(batch_size=2)
    >>> mine = next(workload.batches(1, 2, config=config))[0]
    >>> union = workload.global_batch(0, 2, config=config)[0]
    >>> bool(torch.equal(union[2:], mine))
    True
    """
    config = config or WorkloadConfig()
    if config.corpus == "pydoc":
        _check_no_heterogeneity(heterogeneity)
        return text_corpus(config).batches(
            worker,
            world_size,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            seed=config.seed,
            shards=config.shards,
            start_step=start_step,
        )
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
    if config.corpus == "pydoc":
        _check_no_heterogeneity(heterogeneity)
        text = text_corpus(config)
        parts = [
            text.batch(
                w,
                world_size,
                step,
                batch_size=config.batch_size,
                seq_len=config.seq_len,
                seed=config.seed,
                shards=config.shards,
            )
            for w in range(world_size)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
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
    """The fixed held-out set: ``config.eval_sequences`` sequences.

    Markov: drawn from the unskewed chain with its own stream of ``config.seed``, so no
    training batch of any worker, heterogeneous or not, shares its randomness. Text:
    disjoint windows of the held-out bytes (:meth:`TextCorpus.evaluation_windows`), which
    no training window overlaps.

    Examples
    --------
    >>> from benches.workloads import diloco_language_model as workload
    >>> inputs, targets = workload.evaluation_set()
    >>> tuple(inputs.shape)
    (512, 32)
    """
    config = config or WorkloadConfig()
    if config.corpus == "pydoc":
        windows = text_corpus(config).evaluation_windows(config.eval_sequences, config.seq_len)
        tokens = torch.from_numpy(windows.astype(np.int64))
        return tokens[:, :-1], tokens[:, 1:]
    uniforms = np.random.default_rng([config.seed, _EVAL_KEY]).random(
        (config.eval_sequences, config.seq_len)
    )
    tokens = corpus(config).sample(uniforms)
    return tokens[:, :-1], tokens[:, 1:]


def reference_losses(config: WorkloadConfig | None = None) -> dict[str, float]:
    """Held-out losses (nats per token) to read a model's loss against.

    Markov: ``{"entropy floor": ...}``, the least achievable loss
    (:meth:`MarkovCorpus.entropy_floor`). Text: ``{"unigram": ..., "bigram": ...}``, the
    byte-frequency and byte-pair models of :meth:`TextCorpus.baselines`, which a model must
    beat to have learnt anything beyond them.

    Examples
    --------
    >>> from benches.workloads import diloco_language_model as workload
    >>> sorted(workload.reference_losses(workload.pydoc_config()))
    ['bigram', 'unigram']
    """
    config = config or WorkloadConfig()
    if config.corpus == "pydoc":
        return text_corpus(config).baselines()
    return {"entropy floor": corpus(config).entropy_floor(config.seq_len)}
