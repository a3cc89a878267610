"""The slow-link harness (``benches/workloads/shaped_link.py``) and an all-reduce through it.

The harness needs root, ``ip`` and ``tc``: where it cannot run, the tests that use it skip
with :func:`~benches.workloads.shaped_link.available`'s reason. The slow test checks that
the shaping really applies, by a physical lower bound (the bytes cannot cross the filter
faster than its rate, less one bucket), not by a timing benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
from collective_harness import run_peers

from benches.workloads import shaped_link
from benches.workloads.shaped_link import ShapedLink, ShapedLinkError
from thrifty.errors import InvalidArgumentError


def _needs_harness() -> None:
    reason = shaped_link.available()
    if reason is not None:
        pytest.skip(f"shaped link unavailable: {reason}")


def _namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def test_available_is_none_or_a_reason() -> None:
    reason = shaped_link.available()
    assert reason is None or (isinstance(reason, str) and reason.strip())


@pytest.mark.parametrize(
    ("text", "bits"),
    [("100mbit", 10**8), ("1gbit", 10**9), ("512kbit", 512_000), ("1.5mbps", 12 * 10**6)],
)
def test_parse_rate(text: str, bits: int) -> None:
    assert shaped_link.parse_rate(text) == bits


@pytest.mark.parametrize("rate", ["fast", "100 mb/s", "", "-1mbit", "1bit", True, 2.5, None])
def test_a_bad_rate_names_the_argument(rate: Any) -> None:
    # Refused before any namespace exists: this needs no root.
    with pytest.raises(InvalidArgumentError) as error:
        ShapedLink(rate)
    assert error.value.argument == "rate"
    assert "rate" in str(error.value)


def test_a_bad_burst_or_latency_names_the_argument() -> None:
    with pytest.raises(InvalidArgumentError) as error:
        ShapedLink("10mbit", burst=1000)
    assert error.value.argument == "burst"
    with pytest.raises(InvalidArgumentError) as error:
        ShapedLink("10mbit", latency_ms=0)
    assert error.value.argument == "latency_ms"


def test_the_burst_holds_a_loopback_packet_and_a_tick() -> None:
    assert shaped_link.default_burst(20 * 10**6) == 256 << 10
    # 10 gbit/s: 2 ms of traffic is more than 256 KiB.
    assert shaped_link.default_burst(10**10) == 2_500_000


def test_a_command_runs_inside_behind_the_filter() -> None:
    _needs_harness()
    with ShapedLink("50mbit") as link:
        assert link.name in _namespaces()
        done = link.run(
            [sys.executable, "-c", "import os; print(os.environ['THRIFTY_SHAPED_LINK'])"],
            timeout=60,
            capture=True,
        )
        assert done.stdout.split() == [link.name, "50000000"]
        qdisc = link.run(["tc", "qdisc", "show", "dev", "lo"], timeout=30, capture=True)
        assert "tbf" in qdisc.stdout
        assert "50Mbit" in qdisc.stdout
        with pytest.raises(ShapedLinkError, match="failed"):
            link.run([sys.executable, "-c", "raise SystemExit(3)"], timeout=60)
    assert link.name not in _namespaces()


def test_the_namespace_is_deleted_after_an_exception_and_a_timeout() -> None:
    _needs_harness()
    with pytest.raises(KeyboardInterrupt), ShapedLink("50mbit") as link:
        raise KeyboardInterrupt
    assert link.name not in _namespaces()
    with ShapedLink("50mbit") as link:
        started = time.monotonic()
        with pytest.raises(ShapedLinkError, match="did not finish"):
            link.run(["sleep", "30"], timeout=0.5)
        assert time.monotonic() - started < 10
    assert link.name not in _namespaces()


def _sum_peer(comm: Any, size: int) -> tuple[bool, float, float]:
    x = np.full(size // 4, comm.rank + 1, dtype=np.float32)
    comm.barrier()
    started = time.monotonic()
    comm.all_reduce(x)
    finished = time.monotonic()
    expected = comm.world_size * (comm.world_size + 1) / 2
    return bool(np.all(x == expected)), started, finished


def _shaped_all_reduce(world: int, size: int) -> list[tuple[bool, float, float]]:
    result: list[tuple[bool, float, float]] = run_peers(world, _sum_peer, size, timeout_s=60.0)
    return result


@pytest.mark.slow
def test_an_all_reduce_through_the_filter_is_right_and_no_faster_than_the_rate() -> None:
    _needs_harness()
    world, size, rate = 2, 4 << 20, "20mbit"
    with ShapedLink(rate) as link:
        before = link.qdisc_stats().bytes
        results = link.call(_shaped_all_reduce, world, size, timeout=240)
        crossed = link.qdisc_stats().bytes - before
        burst = link.burst
    assert all(ok for ok, _, _ in results)
    total = world * shaped_link.ring_bytes(size, world)  # every rank's sends cross lo once
    assert crossed >= total
    # Every byte crossed the filter between the first start and the last finish (CLOCK_
    # MONOTONIC is one clock for all processes): at most one full bucket came for free.
    span = max(f for _, _, f in results) - min(s for _, s, _ in results)
    assert span >= shaped_link.ideal_seconds(total - burst, rate)


_SERVER = """
import socket
s = socket.socket()
s.bind(("0.0.0.0", 5001))
s.listen()
print("ready", flush=True)
c, _ = s.accept()
got = 0
while chunk := c.recv(1 << 16):
    got += len(chunk)
print(got)
"""
_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], 5001), timeout=30) as c:
    c.sendall(bytes(int(sys.argv[2])))
"""


def test_per_peer_links_carry_one_peers_traffic_each() -> None:
    _needs_harness()
    size = 1 << 20
    with shaped_link.PeerLinks(2, "200mbit") as links:
        assert all(p in _namespaces() for p in links.peers)
        server = subprocess.Popen(
            ["ip", "netns", "exec", links.peers[1], sys.executable, "-c", _SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            client = [sys.executable, "-c", _CLIENT, links.address(1), str(size)]
            subprocess.run(["ip", "netns", "exec", links.peers[0], *client], timeout=60, check=True)
            out, _ = server.communicate(timeout=60)
        finally:
            server.kill()
        assert int(out) == size
        sent = links.sent_bytes()
        # Peer 0's upload filter carried the data (plus headers); peer 1's only the ACKs.
        assert sent[0] >= size
        assert sent[1] < size // 4
    assert not any(p in _namespaces() for p in links.peers)


def test_a_failed_open_leaves_no_namespace_and_spares_others() -> None:
    _needs_harness()
    with ShapedLink("50mbit") as first:
        twin = ShapedLink("50mbit")
        twin.name = first.name  # `ip netns add` refuses a taken name
        with pytest.raises(ShapedLinkError, match="netns add"):
            twin.open()
        twin.close()
        assert first.name in _namespaces()
    broken = ShapedLink("50mbit")
    broken.rate_bps = 0  # tc refuses it once the namespace exists
    try:
        with pytest.raises(ShapedLinkError, match="tbf"):
            broken.open()
        assert broken.name not in _namespaces()
    finally:
        broken.close()
