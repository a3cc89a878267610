"""Authentication, and a coordinator that survives whatever arrives on its port."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import time
from collections.abc import Iterator

import numpy as np
import pytest

from thrifty import collective
from thrifty.errors import AuthenticationError, InvalidArgumentError

SECRET = "correct horse battery staple"

AUTH, CONTROL, DATA = 1, 2, 3


def frame(kind: int, payload: bytes, *, version: int = 1, length: int | None = None) -> bytes:
    """magic "TH" | version u8 | kind u8 | len u32 LE | tag u64 LE | payload"""
    size = len(payload) if length is None else length
    return b"TH" + struct.pack("<BBIQ", version, kind, size, 0) + payload


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    header = _read_exactly(sock, 16)
    assert header[:2] == b"TH"
    assert header[2] == 1
    kind, size = header[3], struct.unpack("<I", header[4:8])[0]
    return kind, _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def authenticate(sock: socket.socket, secret: str, purpose: int = 1) -> None:
    """The client side of the mutual HMAC-SHA256 handshake (see thrifty-collective's auth.rs)."""
    key = secret.encode()
    client_nonce = os.urandom(32)
    sock.sendall(frame(AUTH, bytes([purpose]) + client_nonce))
    _, answer = read_frame(sock)
    server_nonce, server_proof = answer[:32], answer[32:]
    expected = hmac.new(
        key, b"thrifty/server" + bytes([purpose]) + client_nonce + server_nonce, hashlib.sha256
    ).digest()
    assert hmac.compare_digest(server_proof, expected)
    proof = hmac.new(
        key, b"thrifty/client" + bytes([purpose]) + server_nonce + client_nonce, hashlib.sha256
    ).digest()
    sock.sendall(frame(AUTH, proof))
    assert read_frame(sock) == (AUTH, b"\x01")


def closed_by_peer(sock: socket.socket, timeout_s: float = 15.0) -> bool:
    """Whether the other side closes the connection (reading what it sends meanwhile)."""
    sock.settimeout(timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


@pytest.fixture
def coordinator() -> Iterator[collective.Coordinator]:
    with collective.Coordinator("127.0.0.1:0", secret=SECRET) as c:
        yield c


def _connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _works(address: str) -> None:
    """A proper peer still connects, joins and reduces."""
    with collective.Communicator(address, secret=SECRET, timeout_s=20) as comm:
        comm.connect()
        comm.update_topology()
        x = np.arange(5, dtype=np.float64)
        comm.all_reduce(x)
        assert comm.world_size == 1
        assert x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.timeout(60)
def test_wrong_secret_is_refused_at_connect(coordinator: collective.Coordinator) -> None:
    comm = collective.Communicator(coordinator.address, secret="not the secret", timeout_s=10)
    with pytest.raises(AuthenticationError):
        comm.connect()
    comm.close()
    assert coordinator.snapshot().pending == ()
    _works(coordinator.address)


@pytest.mark.timeout(60)
def test_secret_comes_from_the_environment(
    coordinator: collective.Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THRIFTY_SECRET", raising=False)
    with pytest.raises(InvalidArgumentError) as missing:
        collective.Communicator(coordinator.address)
    assert missing.value.argument == "secret"
    assert "THRIFTY_SECRET" in str(missing.value)
    monkeypatch.setenv("THRIFTY_SECRET", SECRET)
    with collective.Communicator(coordinator.address) as comm:
        comm.connect()
        comm.update_topology()
        assert comm.world_size == 1


GARBAGE: dict[str, bytes] = {
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "random bytes": np.random.default_rng(0).bytes(10_000),
    "oversized auth frame": frame(AUTH, b"", length=0xFFFF_FFFF),
    "oversized control frame": frame(CONTROL, b"", length=1 << 30),
    "unknown version": frame(AUTH, bytes(33), version=99),
    "unknown kind": frame(77, bytes(33)),
    "control before auth": frame(CONTROL, b"\x00\x01\x02"),
    "data before auth": frame(DATA, bytes(64)),
    "short auth frame": frame(AUTH, b"\x01"),
    "wrong purpose": frame(AUTH, b"\x02" + bytes(32)),
    "half a header": b"TH\x01",
}


@pytest.mark.timeout(120)
def test_garbage_on_the_coordinator_port_never_crashes_it(
    coordinator: collective.Coordinator,
) -> None:
    sockets = {}
    for name, payload in GARBAGE.items():
        sock = _connect(coordinator.address)
        sock.sendall(payload)
        sockets[name] = sock
    # A challenge answered with a wrong proof.
    sock = _connect(coordinator.address)
    sock.sendall(frame(AUTH, b"\x01" + os.urandom(32)))
    kind, answer = read_frame(sock)
    assert kind == AUTH
    assert len(answer) == 64
    sock.sendall(frame(AUTH, bytes(32)))
    sockets["wrong proof"] = sock
    # Connections that say nothing, and one that closes at once.
    idle = [_connect(coordinator.address) for _ in range(20)]
    _connect(coordinator.address).close()

    _works(coordinator.address)  # while all of that is open
    for name, sock in sockets.items():
        if name != "half a header":  # waits for the rest, until the handshake deadline
            assert closed_by_peer(sock), f"{name}: the coordinator kept the connection"
        sock.close()
    assert closed_by_peer(idle[0]), "an idle connection outlived the handshake deadline"
    for sock in idle:
        sock.close()
    _works(coordinator.address)
    assert coordinator.snapshot().pending == ()  # no garbage connection became a peer


def _authenticated_garbage(address: str, payload: bytes) -> bool:
    sock = _connect(address)
    try:
        authenticate(sock, SECRET)
        sock.sendall(payload)
        return closed_by_peer(sock)
    finally:
        sock.close()


@pytest.mark.timeout(120)
def test_authenticated_garbage_is_dropped(coordinator: collective.Coordinator) -> None:
    address = coordinator.address
    for payload in (
        frame(CONTROL, b"\xff" * 40),  # not a message
        frame(CONTROL, b"", length=(16 << 20) + 1),  # above the control frame cap
        frame(DATA, bytes(100)),  # data on a control connection
        frame(CONTROL, b"\x00", version=2),
    ):
        assert _authenticated_garbage(address, payload)
    _works(address)


def test_handshake_helper_matches_the_protocol(coordinator: collective.Coordinator) -> None:
    """The test's own client handshake is accepted, so the garbage above got past it."""
    sock = _connect(coordinator.address)
    try:
        authenticate(sock, SECRET)
        other = _connect(coordinator.address)
        try:
            with pytest.raises(AssertionError):
                authenticate(other, "wrong")
        finally:
            other.close()
    finally:
        sock.close()
