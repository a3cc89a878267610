"""thrifty.collective's all-reduce beside torch.distributed Gloo, on the same loopback.

The peers of both backends come from ``allreduce_vs_gloo.py`` and run the same command loop.

Each backend keeps ``world`` spawned processes alive for the whole module (one pool per
backend and world size); a benchmark round sends one command to every process, which run
one all-reduce after a barrier and report. The round trip of the command is the same for
both backends and small beside the all-reduces measured here (>= 1 MiB).

``extra_info`` records the bus bandwidth (nccl-tests' ``algbw * 2 (n - 1) / n``, from the
slowest rank's time), and for quantized runs the bytes rank 0 put on the wire.
Under ``--benchmark-disable`` (``make test``) each case runs once, on the smaller sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benches.allreduce_vs_gloo import peer_pool
from thrifty.collective._bandwidth import PeerPool, record

MIB = 1 << 20
WORLDS = (2, 4)
SIZES = (1 * MIB, 16 * MIB, 64 * MIB, 256 * MIB)
QUANTIZED = ("int8", "fp8", "fp4")


def _sizes(config: pytest.Config) -> tuple[int, ...]:
    # Untimed runs (make test) only check that every path works: keep them small.
    return SIZES if not config.getoption("benchmark_disable") else (1 * MIB,)


_pools: dict[tuple[str, int], PeerPool] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_pools() -> Iterator[None]:
    yield
    for pool in _pools.values():
        pool.close()
    _pools.clear()


def pool(backend: str, world: int) -> PeerPool:
    key = (backend, world)
    if key not in _pools:
        _pools[key] = peer_pool(backend, world)
    return _pools[key]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "size" in metafunc.fixturenames:
        sizes = _sizes(metafunc.config)
        metafunc.parametrize("size", sizes, ids=[f"{s // MIB}MB" for s in sizes])


def _measure(
    benchmark: Any, backend: str, world: int, size: int, quantize: str | None, role: str
) -> None:
    peers = pool(backend, world)
    peers.run(size, quantize=quantize)  # warm-up: buffers and pages
    rounds = max(3, min(20, (256 * MIB) // size))
    seconds: list[float] = []
    wire: list[int | None] = []

    def one() -> None:
        s, w = peers.run(size, quantize=quantize)
        seconds.append(s)
        wire.append(w)

    benchmark.group = f"all_reduce world={world} size={size // MIB}MB"
    benchmark.pedantic(one, rounds=rounds, iterations=1)
    best = sorted(seconds)[len(seconds) // 2]
    rec = record(backend, world, size, quantize, seconds=best, wire=wire[-1])
    label = backend if quantize is None else f"{backend} {quantize}"
    benchmark.extra_info.update(
        {
            "role": role,
            "label": label,
            "busbw_gbps": rec.busbw_gbps,
            "wire_bytes": rec.wire_bytes,
            "fp32_bytes": size,
        }
    )
    # PeerPool.run raised if any rank's result was wrong; the wire bytes must match the
    # format: fp32 sends 2 (n - 1) / n of the array, quantized formats less.
    if world > 1:
        ring_bytes = 2 * (world - 1) * size // world
        ratio = {None: 1.0, "int8": 0.3, "fp8": 0.3, "fp4": 0.16}[quantize]
        # Gloo does not say what it sent (None).
        assert backend == "gloo" or (
            rec.wire_bytes is not None
            and rec.wire_bytes <= ring_bytes * ratio * 1.05 + 4096 * world
        )


@pytest.mark.parametrize("world", WORLDS)
def test_thrifty_fp32(benchmark: Any, world: int, size: int) -> None:
    _measure(benchmark, "thrifty", world, size, None, "ours")


@pytest.mark.parametrize("world", WORLDS)
def test_thrifty_shm_fp32(benchmark: Any, world: int, size: int) -> None:
    # Links through shared memory: what the kernel's copies cost, in the same run.
    _measure(benchmark, "thrifty-shm", world, size, None, "ours")


@pytest.mark.parametrize("quantize", QUANTIZED)
@pytest.mark.parametrize("world", WORLDS)
def test_thrifty_quantized(benchmark: Any, world: int, size: int, quantize: str) -> None:
    _measure(benchmark, "thrifty", world, size, quantize, "ours")


@pytest.mark.parametrize("world", WORLDS)
def test_gloo(benchmark: Any, world: int, size: int) -> None:
    _measure(benchmark, "gloo", world, size, None, "baseline")
