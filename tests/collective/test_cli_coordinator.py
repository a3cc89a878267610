"""``thrifty coordinator``: a subprocess prints its address, serves peers, stops on SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
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


def test_coordinator_errors_exit_with_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("THRIFTY_SECRET", raising=False)
    assert cli.main(["coordinator", "--bind", "127.0.0.1:0"]) == 2
    assert "THRIFTY_SECRET" in capsys.readouterr().err
    assert cli.main(["coordinator", "--bind", "nowhere", "--secret", "s"]) == 2
