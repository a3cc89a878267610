"""Real English text: the documentation topics shipped with Python, as bytes.

``pydoc_data.topics.topics`` (the text ``help("if")`` prints) is about 460 kB of English
prose and code examples in every CPython install, so the corpus needs no download. The
tokenizer is the identity on UTF-8 bytes (vocabulary 256): nothing to train, nothing
unknown, and it round-trips any text.

The topics are concatenated in an order shuffled by the seed; the last ``holdout`` of the
bytes is the held-out text and the rest the training text, so no evaluation byte is ever in
a training window. The training text is cut into ``world`` contiguous, disjoint shards, one
per worker (``shards="disjoint"``, how data-parallel training reads a dataset), or every
worker draws from all of it (``shards="shared"``). A batch is ``batch_size`` windows of
``seq_len + 1`` bytes at uniformly random starts inside the worker's text, drawn by a
generator of its own per (seed, world, worker, step), so a worker can resume at any step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from benches.workloads.diloco_language_model.config import WorkloadConfig
from thrifty._checks import check_int
from thrifty._extras import require
from thrifty.errors import InvalidArgumentError

try:
    import torch
except ImportError:  # pragma: no cover - the message names the extra to install
    require("torch")
    raise

Batch = tuple[torch.Tensor, torch.Tensor]
ByteArray = np.ndarray[Any, np.dtype[np.uint8]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]

VOCAB = 256
SHARDS = ("disjoint", "shared")

# Spawn keys, apart from the Markov corpus's, for the topic order and the training stream.
_ORDER_KEY = 10
_STREAM_KEY = 11
# Topics are joined by a blank line, as they would be printed one after another.
_SEPARATOR = b"\n\n"
# Add-alpha smoothing of the bigram baseline towards the unigram: a fixed, conventional
# choice (not tuned on the held-out text).
_BIGRAM_PRIOR = 1.0


def encode(text: str) -> ByteArray:
    """The byte tokens of ``text``: its UTF-8 encoding.

    Examples
    --------
    >>> from benches.workloads.diloco_language_model import text
    >>> text.encode("héllo").tolist()
    [104, 195, 169, 108, 108, 111]
    >>> text.decode(text.encode("héllo"))
    'héllo'
    """
    tokens: ByteArray = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()
    return tokens


def decode(tokens: Any) -> str:
    """The text of byte ``tokens`` (any integer sequence in [0, 256)); bad UTF-8 is replaced."""
    values = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if values.size and (values.min() < 0 or values.max() >= VOCAB):
        raise InvalidArgumentError("tokens must be bytes, in [0, 256)", "tokens")
    return values.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def _check_holdout(holdout: float) -> float:
    value = float(holdout)
    if not 0.0 < value < 1.0:
        raise InvalidArgumentError(f"holdout must be in (0, 1), got {holdout!r}", "holdout")
    return value


def _cross_entropy(probabilities: FloatArray, counts: FloatArray) -> float:
    """Mean of ``-log p`` over tokens counted by ``counts`` (same shape as ``probabilities``)."""
    return float(-(counts * np.log(probabilities)).sum() / counts.sum())


class TextCorpus:
    """The Python documentation topics as bytes: a seeded split, worker shards and batches.

    Parameters
    ----------
    seed : int, optional
        Seeds the order of the topics (hence the split) and, in :meth:`batches`, the
        window starts.
    holdout : float, optional
        Fraction of the bytes, at the end of the shuffled concatenation, held out.

    Examples
    --------
    >>> from benches.workloads.diloco_language_model import TextCorpus
    >>> corpus = TextCorpus(seed=0)
    >>> corpus.vocab, len(corpus.train) + len(corpus.held_out) == len(corpus.tokens)
    (256, True)
    >>> round(len(corpus.held_out) / len(corpus.tokens), 2)
    0.1
    """

    vocab = VOCAB

    def __init__(self, *, seed: int = 0, holdout: float = 0.1) -> None:
        from pydoc_data.topics import topics

        self.seed = check_int(seed, "seed", minimum=0)
        self.holdout = _check_holdout(holdout)
        names = sorted(topics)
        order = np.random.default_rng([seed, _ORDER_KEY]).permutation(len(names))
        #: The topic names in the order they are concatenated.
        self.topics: list[str] = [names[i] for i in order]
        joined = _SEPARATOR.join(topics[name].encode("utf-8") for name in self.topics)
        self.tokens: ByteArray = np.frombuffer(joined, dtype=np.uint8)
        cut = len(self.tokens) - round(self.holdout * len(self.tokens))
        #: Where the held-out text starts in :attr:`tokens`.
        self.cut = cut
        self.train: ByteArray = self.tokens[:cut]
        self.held_out: ByteArray = self.tokens[cut:]
        self._baselines: dict[str, float] | None = None

    def shard(self, worker: int, world_size: int, *, shards: str = "disjoint") -> tuple[int, int]:
        """``(start, stop)`` of worker ``worker``'s text in :attr:`train`.

        ``"disjoint"``: the ``world_size`` contiguous parts of the training text, in worker
        order, each as long as the others (to a byte). ``"shared"``: all of it.
        """
        check_int(world_size, "world_size", minimum=1)
        check_int(worker, "worker", minimum=0, maximum=world_size - 1)
        if shards not in SHARDS:
            raise InvalidArgumentError(f"shards must be one of {SHARDS}, got {shards!r}", "shards")
        if shards == "shared":
            return 0, len(self.train)
        bounds = np.linspace(0, len(self.train), world_size + 1).round().astype(int)
        return int(bounds[worker]), int(bounds[worker + 1])

    def window_starts(
        self,
        worker: int,
        world_size: int,
        step: int,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        shards: str = "disjoint",
    ) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Offsets in :attr:`train` of the windows of ``seq_len + 1`` bytes of one batch."""
        start, stop = self.shard(worker, world_size, shards=shards)
        span = stop - start - seq_len
        if span < 1:
            raise InvalidArgumentError(
                f"seq_len must be shorter than a worker's shard ({stop - start} bytes), "
                f"got {seq_len}",
                "seq_len",
            )
        rng = np.random.default_rng([seed, _STREAM_KEY, world_size, worker, step])
        result: np.ndarray[Any, np.dtype[np.int64]] = start + rng.integers(0, span, batch_size)
        return result

    def batch(
        self,
        worker: int,
        world_size: int,
        step: int,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        shards: str = "disjoint",
    ) -> Batch:
        """Worker ``worker``'s batch of ``step``: ``(inputs, targets)``, int64 (batch, seq_len)."""
        starts = self.window_starts(
            worker,
            world_size,
            step,
            batch_size=batch_size,
            seq_len=seq_len,
            seed=seed,
            shards=shards,
        )
        windows = self.train[starts[:, None] + np.arange(seq_len + 1)]
        tokens = torch.from_numpy(windows.astype(np.int64))
        return tokens[:, :-1], tokens[:, 1:]

    def batches(
        self,
        worker: int,
        world_size: int,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        shards: str = "disjoint",
        start_step: int = 0,
    ) -> Iterator[Batch]:
        """Worker ``worker``'s endless stream of :meth:`batch`, from ``start_step``."""
        check_int(start_step, "start_step", minimum=0)
        step = start_step
        while True:
            yield self.batch(
                worker,
                world_size,
                step,
                batch_size=batch_size,
                seq_len=seq_len,
                seed=seed,
                shards=shards,
            )
            step += 1

    def evaluation_windows(self, count: int, seq_len: int) -> ByteArray:
        """``count`` disjoint windows of ``seq_len + 1`` held-out bytes, spread evenly.

        The held-out text is cut into consecutive windows; ``count`` of them, evenly spaced,
        are kept (all of them if ``count`` is their number).
        """
        check_int(count, "count", minimum=1)
        check_int(seq_len, "seq_len", minimum=1)
        available = len(self.held_out) // (seq_len + 1)
        if count > available:
            raise InvalidArgumentError(
                f"eval_sequences must be at most the {available} held-out windows of "
                f"{seq_len + 1} bytes, got {count}",
                "eval_sequences",
            )
        picked = np.linspace(0, available - 1, count).round().astype(int)
        windows = self.held_out[: available * (seq_len + 1)].reshape(available, seq_len + 1)
        result: ByteArray = windows[picked]
        return result

    def baselines(self) -> dict[str, float]:
        """Held-out cross-entropy (nats per byte) of byte models counted on the training text.

        ``"unigram"``: the training bytes' frequencies (add-one smoothed, so no held-out byte
        has probability 0). ``"bigram"``: the next byte given the previous one, smoothed
        towards the unigram with a prior of one pseudo-count. What a language model must beat
        to have learnt more than byte frequencies and pairs.

        Examples
        --------
        >>> from benches.workloads.diloco_language_model import TextCorpus
        >>> baselines = TextCorpus().baselines()
        >>> 2.9 < baselines["unigram"] < 3.3, 2.2 < baselines["bigram"] < 2.6
        (True, True)
        """
        if self._baselines is not None:
            return dict(self._baselines)
        train = self.train.astype(np.int64)
        held = self.held_out.astype(np.int64)
        unigram: FloatArray = np.bincount(train, minlength=VOCAB).astype(np.float64) + 1.0
        unigram /= unigram.sum()
        held_counts = np.bincount(held, minlength=VOCAB).astype(np.float64)
        pairs = np.zeros((VOCAB, VOCAB))
        np.add.at(pairs, (train[:-1], train[1:]), 1.0)
        bigram: FloatArray = (pairs + _BIGRAM_PRIOR * unigram) / (
            pairs.sum(axis=1, keepdims=True) + _BIGRAM_PRIOR
        )
        held_pairs = np.zeros((VOCAB, VOCAB))
        np.add.at(held_pairs, (held[:-1], held[1:]), 1.0)
        self._baselines = {
            "unigram": _cross_entropy(unigram, held_counts),
            "bigram": _cross_entropy(bigram, held_pairs),
        }
        return dict(self._baselines)


_CORPORA: dict[tuple[int, float], TextCorpus] = {}


def text_corpus(config: WorkloadConfig) -> TextCorpus:
    """The :class:`TextCorpus` of ``config`` (``seed``, ``holdout``), built once per process."""
    key = (config.seed, config.holdout)
    if key not in _CORPORA:
        _CORPORA[key] = TextCorpus(seed=config.seed, holdout=config.holdout)
    return _CORPORA[key]
