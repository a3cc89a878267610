"""thrifty.collective on the command line: coordinator, demo collective, bench allreduce."""

from __future__ import annotations

import json
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from thrifty import cli, collective


def _lines(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "thrifty.cli", "coordinator", "--bind", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(60)
def test_coordinator_subprocess_serves_a_peer_and_stops_on_sigterm() -> None:
    process = _start("--secret", "cli-secret", "--heartbeat-timeout", "3", "--json")
    try:
        lines = _lines(process.stdout)
        first = json.loads(lines.get(timeout=30))
        assert first["event"] == "listening"
        with collective.Communicator(first["address"], secret="cli-secret") as comm:
            comm.connect()
            comm.update_topology()
            x = np.ones(3, dtype=np.float32)
            comm.all_reduce(x)
            assert comm.world_size == 1
            assert x.tolist() == [1.0, 1.0, 1.0]
            me = f"{comm.id:016x}"
            while True:  # membership changes are printed as they happen
                event = json.loads(lines.get(timeout=30))
                assert event["event"] == "membership"
                if event["members"] == [me]:
                    break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        while (event := json.loads(lines.get(timeout=30)))["event"] == "membership":
            pass
        assert event == {"event": "stopped"}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.timeout(60)
def test_coordinator_text_output_and_sigint() -> None:
    process = _start("--secret", "cli-secret")
    try:
        lines = _lines(process.stdout)
        assert lines.get(timeout=30).startswith("thrifty coordinator listening on 127.0.0.1:")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.timeout(60)
def test_coordinator_logs_why_it_drops_a_connection() -> None:
    process = _start("--secret", "cli-secret", "--json")
    try:
        lines = _lines(process.stdout)
        errors = _lines(process.stderr)
        host, port = json.loads(lines.get(timeout=30))["address"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            # A frame of an unknown protocol version, then a wait for the coordinator to hang up.
            sock.sendall(b"TH" + struct.pack("<BBIQ", 99, 1, 32, 0) + bytes(32))
            while sock.recv(4096):  # its challenge, then the end of the connection
                pass
        logged = errors.get(timeout=30)
        assert "dropping connection from 127.0.0.1" in logged
        assert "version" in logged
    finally:
        process.kill()
        process.wait()


def test_coordinator_errors_exit_with_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("THRIFTY_SECRET", raising=False)
    assert cli.main(["coordinator", "--bind", "127.0.0.1:0"]) == 2
    assert "THRIFTY_SECRET" in capsys.readouterr().err
    assert cli.main(["coordinator", "--bind", "nowhere", "--secret", "s"]) == 2


@pytest.mark.timeout(240)
def test_demo_collective_tells_the_failure_story(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "collective", "--quick", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)["collective"]
    story = result["failure"]
    assert story["killed_rank"] == 3
    # Every survivor lost the peer with its buffer intact, then finished with three.
    assert sorted(e["rank"] for e in story["peer_lost"]) == [0, 1, 2]
    assert all(e["buffer_restored"] for e in story["peer_lost"])
    assert all(e["correct"] and e["world_size"] == 3 for e in story["retried"])
    backends = {(r["backend"], r["quantize"]) for r in result["bandwidth"]}
    assert backends == {("thrifty", None), ("thrifty", "int8"), ("thrifty", "fp4"), ("gloo", None)}
    assert (tmp_path / "collective_bandwidth.png").stat().st_size > 1000


@pytest.mark.timeout(240)
def test_bench_allreduce_json_reports_wire_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "bw.png"
    argv = ["bench", "allreduce", "--world", "2", "--size", "1MB", "--iters", "1"]
    argv += ["--quantize", "none", "fp4", "--json", "--plot", str(plot)]
    assert cli.main(argv) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    wire = {(r["backend"], r["quantize"]): r["wire_bytes"] for r in records}
    # thrifty only: the Gloo baseline lives in the benchmarks (and `thrifty demo collective`).
    assert set(wire) == {("thrifty", None), ("thrifty", "fp4")}
    # fp4 with one fp32 scale per 64 values: at least 6x less than fp32 on the wire.
    assert wire[("thrifty", None)] >= 6 * wire[("thrifty", "fp4")] > 0
    assert plot.stat().st_size > 1000


def test_bench_allreduce_rejects_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "allreduce", "--size", "lots"]) == 2
    assert "size" in capsys.readouterr().err
