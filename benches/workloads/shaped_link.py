"""A slow link on one machine: a private network namespace whose loopback is rate-limited.

:class:`ShapedLink` creates a uniquely named namespace (``ip netns add``), brings its
loopback up and puts a token-bucket filter on it (``tc qdisc add dev lo root tbf``); leaving
the ``with`` block deletes the namespace, after an exception or Ctrl-C too. Processes run
inside it either as a command (:meth:`ShapedLink.run`, through ``ip netns exec``) or as a
Python callable in a spawned process that enters the namespace first
(:meth:`ShapedLink.call`); every process they spawn inherits the namespace, so the workers
of a benchmark talk over the shaped loopback on 127.0.0.1 without knowing it.

What is shaped: the tbf sits on ``lo``'s egress, and every packet between two processes
in the namespace leaves through ``lo`` once. The filter therefore limits the *sum* of all
peers' traffic, like peers sharing one segment through a hub, not one link per peer. A
ring all-reduce of ``S`` bytes at world ``n`` sends ``2 (n - 1) / n * S`` per rank, so
``2 (n - 1) * S`` bytes cross the filter and the all-reduce cannot finish before
``2 (n - 1) * S * 8 / rate`` seconds (less the bucket's burst); its bus bandwidth
(nccl-tests' ``algbw * 2 (n - 1) / n``) is then at most ``rate / (8 n)`` bytes a second.
:func:`link_utilisation` is the fraction of the rate some traffic used, and
:meth:`ShapedLink.qdisc_stats` reads what really crossed the filter (headers included).

:class:`PeerLinks` is the other model: one namespace per peer, each with a veth into a
bridge in a hub namespace and a tbf on both ends of it, so that every peer has its own
full-duplex link of the rate (one NIC per host on a switch); workers move into their
peer's namespace with :func:`enter` (:class:`EnterThenCall` as a spawn target).

It needs root (``CAP_NET_ADMIN``), ``ip`` and ``tc`` and the kernel's ``tbf`` qdisc;
:func:`available` says why not where it cannot run. Latency is not emulated (the kernel's
``netem`` is the usual tool, and is often absent); only the rate is.

This is benchmark and test code, not part of the library.

Examples
--------
>>> from benches.workloads.shaped_link import parse_rate, ideal_seconds
>>> parse_rate("100mbit"), parse_rate("1gbit"), parse_rate("512kbit")
(100000000, 1000000000, 512000)
>>> round(ideal_seconds(2 * 3 * (16 << 20), "100mbit"), 2)  # 16 MiB, ring of 4
8.05
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
import subprocess
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thrifty.errors import InvalidArgumentError

#: Set in the environment of every process started by :meth:`ShapedLink.run`:
#: ``"<namespace> <rate in bit/s>"``.
ENV = "THRIFTY_SHAPED_LINK"

_UNITS = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "bps": 8,  # tc's spelling of bytes per second
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
}
#: The most a loopback GSO packet carries (``gso_max_size`` of ``lo``); the bucket must
#: hold one whole, or tbf has to split it.
_LARGEST_PACKET = 64 << 10
_MIN_BURST = 256 << 10
_CLONE_NEWNET = 0x40000000
_COMMAND_TIMEOUT = 30.0


class ShapedLinkError(RuntimeError):
    """A namespace or qdisc command failed; the message holds the command and its stderr."""


def parse_rate(rate: str | int, argument: str = "rate") -> int:
    """A rate in tc's notation (``"100mbit"``, ``"1gbit"``, ``"12500kbps"``) or a plain
    number of bits per second, as bits per second.

    >>> parse_rate("2.5gbit")
    2500000000
    >>> parse_rate("fast")
    Traceback (most recent call last):
    ...
    thrifty.errors.InvalidArgumentError: rate must look like 100mbit, 1gbit or 512kbit, got 'fast'
    """
    if isinstance(rate, int) and not isinstance(rate, bool):
        bits = rate
    else:
        match = (
            re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", rate)
            if isinstance(rate, str)
            else None
        )
        unit = match.group(2).lower() if match else ""
        if match is None or (unit and unit not in _UNITS):
            raise InvalidArgumentError(
                f"{argument} must look like 100mbit, 1gbit or 512kbit, got {rate!r}", argument
            )
        bits = round(float(match.group(1)) * _UNITS[unit or "bit"])
    # tbf keeps the rate in a 64-bit count of bytes per second; below 8 kbit/s a benchmark
    # would not finish anyway.
    if not 8_000 <= bits <= 10**13:
        raise InvalidArgumentError(
            f"{argument} must be between 8kbit and 10tbit, got {rate!r}", argument
        )
    return bits


def default_burst(rate_bps: int) -> int:
    """The bucket size for ``rate_bps``: 256 KiB, or 2 ms of traffic at high rates.

    tbf needs the bucket to hold the largest packet (64 KiB on loopback, with GSO) and at
    least what the rate delivers in one timer tick; a bucket much larger than that lets
    bursts through unshaped. 2 ms covers a 1 ms tick (HZ=1000) twice.
    """
    return max(_MIN_BURST, _LARGEST_PACKET, rate_bps // 8 * 2 // 1000)


def ideal_seconds(total_bytes: int, rate: str | int) -> float:
    """The time ``total_bytes`` need to cross a filter of ``rate`` (no burst, no headers)."""
    return total_bytes * 8 / parse_rate(rate)


def ring_bytes(size_bytes: int, world: int) -> int:
    """What one rank of a ring all-reduce sends: ``2 (n - 1) / n`` of the array."""
    return 2 * (world - 1) * size_bytes // world if world > 1 else 0


def link_utilisation(total_bytes: int, seconds: float, rate: str | int) -> float:
    """The fraction of ``rate`` that ``total_bytes`` (all ranks' together) used in ``seconds``."""
    return total_bytes * 8 / (seconds * parse_rate(rate))


@dataclass(frozen=True)
class QdiscStats:
    """The counters of the filter: bytes and packets sent through it, drops, overlimits."""

    bytes: int
    packets: int
    drops: int
    overlimits: int


def _command(argv: Sequence[str], timeout: float = _COMMAND_TIMEOUT) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise ShapedLinkError(f"{' '.join(argv)} did not finish within {timeout} s") from error
    except OSError as error:
        raise ShapedLinkError(f"{' '.join(argv)}: {error}") from error
    if done.returncode != 0:
        raise ShapedLinkError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _delete_namespace(name: str, timeout: float) -> None:
    # Absent when its creation was interrupted or failed: nothing to delete then.
    if os.path.exists(f"/run/netns/{name}"):
        _command(["ip", "netns", "delete", name], timeout)


def current() -> tuple[str, int] | None:
    """``(namespace, rate in bit/s)`` when this process was started by :meth:`ShapedLink.run`."""
    value = os.environ.get(ENV)
    if not value:
        return None
    name, _, rate = value.partition(" ")
    return name, int(rate)


def enter(namespace: str) -> None:
    """Move this process into the network namespace ``namespace`` (``/run/netns/<name>``).

    Processes it starts afterwards are inside too. Only the calling thread moves, so call
    it before starting threads (a freshly spawned process has none).
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise ShapedLinkError(f"setns({namespace}): {os.strerror(errno)}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EnterThenCall:
    """``fn(rank, *args)`` after moving into ``namespaces[rank]``: a spawned worker's target
    that puts each rank behind its own :class:`PeerLinks` link."""

    fn: Callable[..., Any]
    namespaces: tuple[str, ...]

    def __call__(self, rank: int, *args: Any) -> Any:
        enter(self.namespaces[rank])
        return self.fn(rank, *args)


def _call_inside(
    namespace: str, env: str, fn: Callable[..., Any], args: tuple[Any, ...], conn: Any
) -> None:
    try:
        enter(namespace)
        os.environ[ENV] = env
        conn.send((True, fn(*args)))
    except BaseException as error:  # the parent re-raises it
        conn.send((False, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


class ShapedLink:
    """A private network namespace whose loopback is shaped to ``rate`` by a tbf.

    Parameters
    ----------
    rate
        In tc's notation (``"100mbit"``, ``"1gbit"``) or bits per second.
    burst
        Bytes the bucket holds; default :func:`default_burst`.
    latency_ms
        How long a packet may wait in the filter's queue before it is dropped (tbf's
        ``latency``, which sizes the queue); TCP backs off on drops, so keep it generous.
    timeout
        The limit of each ``ip``/``tc`` command the link runs itself.

    Examples
    --------
    ::

        with ShapedLink("100mbit") as link:
            link.run(["python", "bench.py"], timeout=600)
            print(link.qdisc_stats().bytes)
    """

    def __init__(
        self,
        rate: str | int = "100mbit",
        *,
        burst: int | None = None,
        latency_ms: float = 200.0,
        timeout: float = _COMMAND_TIMEOUT,
    ) -> None:
        self.rate_bps = parse_rate(rate)
        if burst is None:
            burst = default_burst(self.rate_bps)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < _LARGEST_PACKET:
            raise InvalidArgumentError(
                f"burst must be an integer >= {_LARGEST_PACKET} bytes (one loopback packet), "
                f"got {burst!r}",
                "burst",
            )
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)):
            raise InvalidArgumentError("latency_ms must be a number", "latency_ms")
        if not 1 <= latency_ms <= 60_000:
            raise InvalidArgumentError(
                f"latency_ms must be in 1..=60000, got {latency_ms}", "latency_ms"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidArgumentError(f"timeout must be > 0 seconds, got {timeout!r}", "timeout")
        self.burst = burst
        self.latency_ms = float(latency_ms)
        self.timeout = float(timeout)
        self.name = f"thrifty-{os.getpid()}-{secrets.token_hex(3)}"
        self._created = False

    # Life cycle ------------------------------------------------------------------------

    def __enter__(self) -> ShapedLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create the namespace and its filter (undone if any step fails)."""
        # Marked first: a Ctrl-C right after `ip netns add` must still delete it.
        self._created = True
        try:
            try:
                _command(["ip", "netns", "add", self.name], self.timeout)
            except ShapedLinkError:
                self._created = False  # ip refused it: the name is not ours to delete
                raise
            self._exec(["ip", "link", "set", "lo", "up"])
            self._exec(
                [
                    "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
                    "rate", f"{self.rate_bps}bit",
                    "burst", str(self.burst),
                    "latency", f"{self.latency_ms:g}ms",
                ]
            )  # fmt: skip
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Delete the namespace; idempotent. Processes still inside keep it alive until they
        exit, but it has no name any more."""
        if not self._created:
            return
        self._created = False
        # A Ctrl-C during the deletion must not leave the namespace behind.
        previous = signal.getsignal(signal.SIGINT)
        restore = previous is not None and _in_main_thread()
        if restore:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _delete_namespace(self.name, self.timeout)
        finally:
            if restore:
                signal.signal(signal.SIGINT, previous)

    # Running things inside -------------------------------------------------------------

    @property
    def rate(self) -> str:
        return f"{self.rate_bps}bit"

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed with ``ip netns exec <name>``."""
        return ["ip", "netns", "exec", self.name, *argv]

    def _exec(self, argv: Sequence[str]) -> str:
        return _command(self.argv(argv), self.timeout)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        capture: bool = False,
        check: bool = True,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace and wait up to ``timeout`` seconds.

        The command runs in its own session: on a timeout (or Ctrl-C) its whole process
        group is killed, the workers it spawned included, and :class:`ShapedLinkError`
        (or the ``KeyboardInterrupt``) is raised. ``env`` adds to this environment;
        :data:`ENV` is set to ``"<namespace> <rate>"``.
        """
        if not self._created:
            raise ShapedLinkError("the link is not open: use it in a with block")
        environment = {**os.environ, **(env or {}), ENV: f"{self.name} {self.rate_bps}"}
        pipe = subprocess.PIPE if capture else None
        process = subprocess.Popen(
            self.argv(argv),
            env=environment,
            stdout=pipe,
            stderr=pipe,
            text=True,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException as error:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            if isinstance(error, subprocess.TimeoutExpired):
                raise ShapedLinkError(
                    f"{' '.join(argv)} did not finish within {timeout} s (killed)"
                ) from error
            raise
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        if check and done.returncode != 0:
            detail = f": {stderr.strip()[-2000:]}" if stderr else ""
            raise ShapedLinkError(f"{' '.join(argv)} failed ({done.returncode}){detail}")
        return done

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """``fn(*args)`` in a spawned process inside the namespace; its return value.

        ``fn`` must be importable by name and its arguments and result picklable; the
        processes ``fn`` spawns are inside too. An exception in it is re-raised here as
        :class:`ShapedLinkError` with its traceback; past ``timeout`` the process is killed.
        """
        if not self._created:
            raise ShapedLinkError("the link is not open: use it in a with block")
        context = mp.get_context("spawn")
        parent, child = context.Pipe(duplex=False)
        env = f"{self.name} {self.rate_bps}"
        process = context.Process(target=_call_inside, args=(self.name, env, fn, args, child))
        process.start()
        child.close()
        try:
            if not parent.poll(timeout):
                raise ShapedLinkError(f"{fn.__name__} did not finish within {timeout} s (killed)")
            ok, value = parent.recv()
        except EOFError as error:
            raise ShapedLinkError(
                f"{fn.__name__} died without an answer (exit code {process.exitcode})"
            ) from error
        finally:
            if process.is_alive():
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        if not ok:
            raise ShapedLinkError(f"{fn.__name__} failed inside {self.name}: {value}")
        return value

    def qdisc_stats(self) -> QdiscStats:
        """What has crossed the filter so far."""
        return qdisc_stats(self.argv([]))


class PeerLinks:
    """One shaped NIC per peer: ``world`` namespaces, each with a veth into a hub's bridge.

    Peer ``i`` lives in :attr:`peers` ``[i]`` with the address :meth:`address` ``(i)`` on
    its ``eth0``; the hub namespace holds the bridge (address :attr:`hub_address`) and
    :meth:`run` and :meth:`call` start there. A tbf of ``rate`` sits on both ends of every
    veth, so each peer has its own full-duplex link of ``rate`` up and ``rate`` down, as
    with one NIC per host on a switch; a ring all-reduce then moves at most ``rate`` per
    rank, its bus bandwidth is at most ``rate / 8`` bytes a second. A process moves itself
    into its peer's namespace with :func:`enter` (before it opens sockets or threads).

    The arguments are :class:`ShapedLink`'s, and ``world`` (2..=250).
    """

    def __init__(
        self,
        world: int,
        rate: str | int = "100mbit",
        *,
        burst: int | None = None,
        latency_ms: float = 200.0,
        timeout: float = _COMMAND_TIMEOUT,
    ) -> None:
        if isinstance(world, bool) or not isinstance(world, int) or not 2 <= world <= 250:
            raise InvalidArgumentError(
                f"world must be an integer in 2..=250, got {world!r}", "world"
            )
        # The hub is a ShapedLink too (its loopback is shaped, but only the parent uses it).
        self._hub = ShapedLink(rate, burst=burst, latency_ms=latency_ms, timeout=timeout)
        self.world = world
        self.rate_bps = self._hub.rate_bps
        self.burst = self._hub.burst
        self.name = self._hub.name
        self.peers = [f"{self.name}-{i}" for i in range(world)]
        self._made: list[str] = []

    #: The bridge's address in the hub. The subnet is private to the namespaces: it cannot
    #: clash with the host's.
    hub_address = "10.77.0.254"

    @staticmethod
    def address(rank: int) -> str:
        """Peer ``rank``'s address on its ``eth0``."""
        return f"10.77.0.{rank + 1}"

    def __enter__(self) -> PeerLinks:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tbf(self, namespace: str, device: str) -> list[str]:
        return [
            "ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device, "root",
            "tbf", "rate", f"{self.rate_bps}bit", "burst", str(self.burst),
            "latency", f"{self._hub.latency_ms:g}ms",
        ]  # fmt: skip

    def open(self) -> None:
        """Create the hub, its bridge and every peer with its shaped veth (all undone if a
        step fails)."""
        timeout = self._hub.timeout
        self._hub.open()
        try:
            hub = ["ip", "-n", self.name]
            _command([*hub, "link", "add", "br0", "type", "bridge"], timeout)
            _command([*hub, "addr", "add", f"{self.hub_address}/24", "dev", "br0"], timeout)
            _command([*hub, "link", "set", "br0", "up"], timeout)
            for rank, peer in enumerate(self.peers):
                self._made.append(peer)
                _command(["ip", "netns", "add", peer], timeout)
                mine = ["ip", "-n", peer]
                veth = ["type", "veth", "peer", "name", "eth0", "netns", peer]
                _command([*hub, "link", "add", f"vh{rank}", *veth], timeout)
                _command([*hub, "link", "set", f"vh{rank}", "master", "br0", "up"], timeout)
                _command([*mine, "addr", "add", f"{self.address(rank)}/24", "dev", "eth0"], timeout)
                _command([*mine, "link", "set", "eth0", "up"], timeout)
                _command([*mine, "link", "set", "lo", "up"], timeout)
                _command(self._tbf(peer, "eth0"), timeout)  # what the peer sends
                _command(self._tbf(self.name, f"vh{rank}"), timeout)  # what it receives
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Delete every namespace (their veths go with them); idempotent."""
        try:
            while self._made:
                _delete_namespace(self._made.pop(), self._hub.timeout)
        finally:
            self._hub.close()

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """:meth:`ShapedLink.run` in the hub namespace."""
        return self._hub.run(argv, **kwargs)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """:meth:`ShapedLink.call` in the hub namespace."""
        return self._hub.call(fn, *args, timeout=timeout)

    def sent_bytes(self) -> list[int]:
        """The bytes each peer has sent through its upload filter so far."""
        return [qdisc_stats(["ip", "netns", "exec", p], "eth0").bytes for p in self.peers]


def qdisc_stats(prefix: Sequence[str] = (), device: str = "lo") -> QdiscStats:
    """The counters of the root qdisc of ``device`` (in this namespace, or through
    ``prefix``, e.g. ``ip netns exec <name>``)."""
    text = _command([*prefix, "tc", "-s", "qdisc", "show", "dev", device])
    sent = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", text)
    if sent is None:
        raise ShapedLinkError(f"no counters in tc's answer: {text!r}")
    return QdiscStats(*(int(v) for v in sent.groups()))


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@functools.cache
def available() -> str | None:
    """None when :class:`ShapedLink` can run here, else why not (one line).

    It checks for root, ``ip`` and ``tc``, then creates and deletes a shaped namespace; the
    answer is kept for the life of the process.
    """
    if not hasattr(os, "geteuid") or os.name != "posix":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create network namespaces"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs {tool!r} (iproute2) on PATH"
    try:
        with ShapedLink("100mbit", timeout=10) as link:
            link.qdisc_stats()
    except ShapedLinkError as error:
        reason = str(error)
        if "tbf" in reason or "qdisc" in reason:
            return f"the kernel refused a tbf qdisc: {reason}"
        return f"cannot create a shaped network namespace: {reason}"
    return None
