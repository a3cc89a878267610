"""Links through shared memory between peer processes on one host: the bits of TCP, the
same refusal of a wrong secret, and the same recovery when a peer dies (see
``test_failure.py``, which runs its SIGKILL test over both transports)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from collective_harness import World, run_peers

from thrifty import collective
from thrifty.errors import InvalidArgumentError

SIZES = (1, 1001, 262_147)
FORMATS = (None, "int8", "fp4")


def _input(rank: int, size: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    # Mixed magnitudes and signs, so that another summation order would show in the bits.
    rng = np.random.default_rng(1000 + rank)
    scale = np.float32(10.0) ** rng.integers(-3, 4, size).astype(np.float32)
    return (rng.standard_normal(size).astype(np.float32) * scale).astype(np.float32)


def _every_reduction(comm: Any) -> dict[str, Any]:
    out = {}
    for quantize in FORMATS:
        for size in SIZES:
            x = _input(comm.rank, size)
            comm.all_reduce(x, quantize=quantize)
            out[f"{quantize}/{size}"] = x.tobytes()
    return {"bits": out, "shared_links": comm.shared_memory_links}


@pytest.mark.timeout(180)
def test_shared_memory_gives_the_bits_of_tcp() -> None:
    n = 3
    tcp = run_peers(n, _every_reduction, shared_memory=False)
    shm = run_peers(n, _every_reduction, shared_memory=True)
    for rank in range(n):
        assert tcp[rank]["shared_links"] == 0
        # Two stripes to each of the other peers.
        assert shm[rank]["shared_links"] == 2 * (n - 1)
        for key, bits in tcp[rank]["bits"].items():
            assert shm[rank]["bits"][key] == bits, f"rank {rank}, {key}: the bits differ"
    for key in tcp[0]["bits"]:
        assert all(tcp[r]["bits"][key] == tcp[0]["bits"][key] for r in range(n)), key


def _connect_only(comm: Any) -> int:
    return int(comm.world_size)


@pytest.mark.timeout(120)
def test_a_peer_with_a_wrong_secret_never_joins_a_shared_memory_world() -> None:
    with World(shared_memory=True) as world:
        world.spawn(_connect_only, world=1, timeout_s=5.0)
        (alone,) = world.results(1)
        assert alone.value == 1
        world.spawn(_connect_only, secret="not the secret", timeout_s=5.0)
        with pytest.raises(AssertionError, match="AuthenticationError"):
            world.results(1)


def test_shared_memory_must_be_a_bool() -> None:
    with pytest.raises(InvalidArgumentError, match="shared_memory"):
        collective.Communicator("127.0.0.1:1", secret="s", shared_memory="yes")  # type: ignore[arg-type]
