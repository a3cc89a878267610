"""``thrifty demo collective``: four local peers, one killed mid all-reduce, then bandwidth.

A coordinator and four peer processes start on 127.0.0.1. The peers loop over all-reduces
of a large array; once they are inside one, the demo SIGKILLs rank 3. Each survivor's call
raises ``PeerLost`` with its buffer restored exactly; the survivors call
``update_topology()``, retry with a world of three, and check the result. The demo then
measures all-reduce bandwidth beside torch.distributed Gloo
(``benches/allreduce_vs_gloo.py``) and saves a plot.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benches import allreduce_vs_gloo
from thrifty._plot import save_figure
from thrifty.collective._bandwidth import BandwidthRecord, plot

_SECRET = "thrifty-demo"


def _peer(address: str, size: int, events: Any) -> None:
    from thrifty import collective

    with collective.Communicator(address, secret=_SECRET, timeout_s=30.0) as comm:
        comm.connect()
        while comm.world_size < 4:
            comm.update_topology()
        rank = comm.rank
        for attempt in range(1000):
            x = np.full(size, float(rank + 1), dtype=np.float32)
            original = x.copy()
            events.put(("started", rank, os.getpid(), attempt))
            started = time.perf_counter()
            try:
                comm.all_reduce(x)
            except collective.PeerLost as error:
                elapsed = time.perf_counter() - started
                restored = bool(np.array_equal(x, original))
                events.put(("peer_lost", rank, restored, elapsed, str(error)[:100]))
                comm.update_topology()
                continue
            if comm.world_size < 4:
                members = comm.all_gather_scalars([float(rank + 1)])[:, 0]
                correct = bool(np.all(x == members.sum()))
                events.put(("retried", rank, comm.world_size, correct, float(x[0])))
                return


def failure(size: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Kill rank 3 inside an all-reduce of ``size`` floats; what the survivors saw."""
    from thrifty import collective

    context = mp.get_context("spawn")
    events = context.Queue()
    lost: list[dict[str, Any]] = []
    retried: list[dict[str, Any]] = []
    killed_at = None
    with collective.Coordinator(secret=_SECRET) as coordinator:
        peers = [
            context.Process(target=_peer, args=(coordinator.address, size, events), daemon=True)
            for _ in range(4)
        ]
        for p in peers:
            p.start()
        deadline = time.monotonic() + timeout_s
        while len(retried) < 3 and time.monotonic() < deadline:
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                continue
            kind, rank = event[0], event[1]
            if kind == "started" and rank == 3 and event[3] == 2 and killed_at is None:
                # Rank 3 has entered its third all-reduce; a moment later all four are in it.
                time.sleep(0.005)
                os.kill(event[2], signal.SIGKILL)
                killed_at = time.perf_counter()
            elif kind == "peer_lost":
                lost.append(
                    {"rank": rank, "buffer_restored": event[2], "seconds": round(event[3], 3)}
                )
            elif kind == "retried":
                retried.append(
                    {"rank": rank, "world_size": event[2], "correct": event[3], "value": event[4]}
                )
        for p in peers:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return {"killed_rank": 3, "peer_lost": lost, "retried": retried}


def run(out_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """The failure story, then the bandwidth table and its plot.

    The plot goes to ``out_dir/collective_bandwidth.png``.
    """
    story = failure(size=(1 << 20) if quick else (16 << 20))
    sizes = [1 << 20] if quick else [1 << 20, 16 << 20, 64 << 20]
    records = allreduce_vs_gloo.all_reduce_bandwidth(
        world=4,
        sizes=sizes,
        quantizations=(None, "int8", "fp4"),
        backends=("thrifty", "gloo"),
        iters=2 if quick else 3,
        progress=progress,
    )
    return {
        "failure": story,
        "bandwidth": [r.to_dict() for r in records],
        "plot": save_figure(lambda path: plot(records, path), out_dir / "collective_bandwidth.png"),
    }


def format_report(result: dict[str, Any]) -> str:
    """What each survivor saw, then the bandwidth table beside Gloo."""
    story = result["failure"]
    lines = ["thrifty.collective: 4 peers, rank 3 killed with SIGKILL inside an all-reduce"]
    for event in sorted(story["peer_lost"], key=lambda e: e["rank"]):
        lines.append(
            f"  rank {event['rank']}: PeerLost after {event['seconds']:.3f} s, "
            f"buffer restored exactly: {event['buffer_restored']}"
        )
    for event in sorted(story["retried"], key=lambda e: e["rank"]):
        lines.append(
            f"  rank {event['rank']}: retried with world {event['world_size']}, "
            f"result correct: {event['correct']} (value {event['value']:g})"
        )
    records = [BandwidthRecord(**r) for r in result["bandwidth"]]
    lines.append("")
    lines.append(allreduce_vs_gloo.format_table(records))
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


if __name__ == "__main__":
    from examples._script import main

    raise SystemExit(main(run, format_report, __doc__ or ""))
