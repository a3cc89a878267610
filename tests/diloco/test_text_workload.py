"""The real-text workload: Python's documentation as bytes, its split, shards and model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benches.workloads import diloco_language_model as workload  # noqa: E402
from benches.workloads.diloco_language_model import text  # noqa: E402
from thrifty.errors import InvalidArgumentError  # noqa: E402

SMALL = workload.pydoc_config(batch_size=4, seq_len=32, eval_sequences=16)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_byte_tokenizer_round_trips() -> None:
    sample = 'The "if" statement -- naïve café, 東京, \U0001f40d\n\ttabs'
    tokens = text.encode(sample)
    assert tokens.dtype == np.uint8
    assert len(tokens) == len(sample.encode("utf-8"))
    assert text.decode(tokens) == sample
    assert text.decode(torch.from_numpy(tokens.astype(np.int64))) == sample
    with pytest.raises(InvalidArgumentError, match="tokens must be bytes"):
        text.decode([0, 256])


def test_the_split_is_deterministic_from_the_seed_and_covers_the_text() -> None:
    from pydoc_data.topics import topics

    a, b, other = text.TextCorpus(seed=0), text.TextCorpus(seed=0), text.TextCorpus(seed=1)
    assert a.topics == b.topics
    assert np.array_equal(a.tokens, b.tokens)
    assert sorted(a.topics) == sorted(topics)
    assert a.topics != other.topics
    # Train then held-out is the whole text, each topic once, in the seeded order.
    assert np.array_equal(np.concatenate([a.train, a.held_out]), a.tokens)
    assert text.decode(a.tokens) == "\n\n".join(topics[name] for name in a.topics)
    assert len(a.held_out) == pytest.approx(0.1 * len(a.tokens), abs=1)
    assert len(text.TextCorpus(holdout=0.25).held_out) == pytest.approx(0.25 * len(a.tokens), abs=1)


def test_no_training_window_reaches_the_held_out_text() -> None:
    corpus = workload.text_corpus(SMALL)
    seq_len = SMALL.seq_len
    for shards in text.SHARDS:
        for worker in range(3):
            for step in range(20):
                starts = corpus.window_starts(
                    worker, 3, step, batch_size=64, seq_len=seq_len, seed=0, shards=shards
                )
                # A window is seq_len + 1 bytes (inputs and the shifted targets).
                assert int(starts.min()) >= 0
                assert int(starts.max()) + seq_len + 1 <= corpus.cut
    # The batches are those windows of the training text.
    inputs, targets = corpus.batch(1, 3, 5, batch_size=8, seq_len=seq_len, seed=0)
    starts = corpus.window_starts(1, 3, 5, batch_size=8, seq_len=seq_len, seed=0)
    for row, start in enumerate(starts):
        window = torch.from_numpy(corpus.tokens[start : start + seq_len + 1].astype(np.int64))
        assert torch.equal(inputs[row], window[:-1])
        assert torch.equal(targets[row], window[1:])
    # The held-out set is disjoint windows of the held-out text alone.
    eval_inputs, eval_targets = workload.evaluation_set(SMALL)
    assert eval_inputs.shape == eval_targets.shape == (SMALL.eval_sequences, seq_len)
    assert torch.equal(eval_inputs[:, 1:], eval_targets[:, :-1])
    held = corpus.held_out.tobytes()
    offsets = []
    for row in range(SMALL.eval_sequences):
        window = bytes(eval_inputs[row].tolist()) + bytes([int(eval_targets[row, -1])])
        offset = held.find(window)
        assert offset >= 0
        offsets.append(offset)
    assert all(b - a >= seq_len + 1 for a, b in itertools.pairwise(offsets))


def test_disjoint_shards_partition_the_training_text_and_shared_ones_span_it() -> None:
    corpus = workload.text_corpus(SMALL)
    world = 4
    bounds = [corpus.shard(w, world) for w in range(world)]
    assert bounds[0][0] == 0
    assert bounds[-1][1] == len(corpus.train)
    for (_, stop), (start, _) in itertools.pairwise(bounds):
        assert stop == start
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1
    for worker, (start, stop) in enumerate(bounds):
        starts = np.concatenate(
            [
                corpus.window_starts(worker, world, step, batch_size=32, seq_len=32, seed=0)
                for step in range(10)
            ]
        )
        assert int(starts.min()) >= start
        assert int(starts.max()) + 33 <= stop
    shared = np.concatenate(
        [
            corpus.window_starts(0, world, step, batch_size=64, seq_len=32, seed=0, shards="shared")
            for step in range(10)
        ]
    )
    # Shared: one worker's windows land in every quarter of the training text.
    assert {int(s) * world // len(corpus.train) for s in shared} == set(range(world))
    with pytest.raises(InvalidArgumentError, match="shards must be one of"):
        corpus.shard(0, world, shards="mixed")


def test_batches_are_reproducible_by_seed_and_resume_at_any_step() -> None:
    def take(config: workload.WorkloadConfig, count: int, **kwargs: int) -> list[Any]:
        stream = workload.batches(1, 4, config=config, **kwargs)
        return [next(stream)[0] for _ in range(count)]

    first, again = take(SMALL, 3), take(SMALL, 3)
    other_seed = take(workload.pydoc_config(batch_size=4, seq_len=32, seed=1), 3)
    resumed = take(SMALL, 1, start_step=2)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(first, other_seed, strict=True))
    assert torch.equal(resumed[0], first[2])
    assert not torch.equal(first[0], first[1])
    inputs, targets = next(workload.batches(0, 4, config=SMALL))
    assert inputs.shape == (SMALL.batch_size, SMALL.seq_len)
    assert inputs.dtype == torch.int64
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    # Workers read different text even when they share it.
    shared = workload.pydoc_config(batch_size=4, seq_len=32, shards="shared")
    a = next(workload.batches(0, 2, config=shared))[0]
    b = next(workload.batches(1, 2, config=shared))[0]
    assert not torch.equal(a, b)


def test_the_global_batch_is_the_workers_batches_in_order() -> None:
    union = workload.global_batch(3, 3, config=SMALL)
    parts = [next(workload.batches(w, 3, config=SMALL, start_step=3)) for w in range(3)]
    assert torch.equal(union[0], torch.cat([p[0] for p in parts]))
    assert torch.equal(union[1], torch.cat([p[1] for p in parts]))
    assert torch.equal(next(workload.global_batches(3, config=SMALL, start_step=3))[0], union[0])


def test_the_text_settings_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="vocab must be 256"):
        workload.WorkloadConfig(corpus="pydoc")
    with pytest.raises(InvalidArgumentError, match="corpus must be one of"):
        workload.WorkloadConfig(corpus="wiki")
    with pytest.raises(InvalidArgumentError, match="holdout must be in"):
        workload.pydoc_config(holdout=1.0)
    with pytest.raises(InvalidArgumentError, match="heterogeneity applies to the markov"):
        workload.batches(0, 2, config=SMALL, heterogeneity=0.5)
    with pytest.raises(InvalidArgumentError, match="eval_sequences must be at most"):
        workload.evaluation_set(workload.pydoc_config(eval_sequences=100_000))


def test_the_text_model_has_at_least_a_million_weights() -> None:
    model = workload.make_model(workload.pydoc_config())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) >= 1_000_000


def test_the_baselines_rank_as_expected() -> None:
    baselines = workload.reference_losses(SMALL)
    # Bytes of English are far from uniform, and the previous byte tells a lot more.
    assert baselines["bigram"] < baselines["unigram"] < 0.7 * np.log(256)
    assert baselines == workload.text_corpus(SMALL).baselines()


def test_a_short_run_learns_more_than_byte_frequencies() -> None:
    # A small TinyLM, so the run takes seconds: it has to beat the unigram model of the
    # bytes on the held-out text.
    config = workload.pydoc_config(
        d_model=64, n_layers=2, seq_len=64, batch_size=16, eval_sequences=64, steps=60, lr=3e-3
    )
    result = workload.ddp_baseline(world_size=1, config=config)
    assert result.entropy_floor is None
    assert result.eval_loss < result.references["unigram"]
    assert result.train_losses[-1] < result.train_losses[0] - 1.5
