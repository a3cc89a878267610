"""Rust's thread pool must not deadlock in a child forked after the pool was used."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from thrifty import steps


def _child_path(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    cost = np.triu(np.random.default_rng(1).random((801, 801)), 1)
    queue.put(steps.optimal_path(cost, 20).tolist())


@pytest.mark.timeout(120)
def test_forked_child_computes_the_same_path_without_hanging() -> None:
    cost = np.triu(np.random.default_rng(1).random((801, 801)), 1)
    expected = steps.optimal_path(cost, 20).tolist()  # starts the parent's pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_path, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert not child.is_alive(), "the forked child hung in the Rust thread pool"
    assert child.exitcode == 0
    assert queue.get(timeout=5) == expected
