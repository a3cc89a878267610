"""thrifty's all-reduce (fp32, int8, fp4) beside Gloo on a rate-limited link.

::

    sudo python benches/allreduce_shaped.py --rates 100mbit 1gbit --sizes 16MB 64MB --world 4

For each rate the script creates a :class:`~benches.workloads.shaped_link.ShapedLink` (a
network namespace whose loopback goes through a tbf of that rate) and runs itself inside
it (hidden ``--inside``). There the peers of ``allreduce_vs_gloo.py`` run the same command
loop as ``all_reduce_bandwidth`` (one pool per backend, one untimed warm-up per cell, then
``iters`` all-reduces timed by the workers after a barrier; the slowest rank's mean), with
the filter's byte counter read before and after each timed run, so the table also shows
what really crossed the link (TCP/IP headers, the barrier and both directions included).

The filter limits all peers' traffic together (see ``shaped_link``): a ring all-reduce of
``S`` bytes at world ``n`` puts ``2 (n - 1) S`` bytes through it, so the bus bandwidth
(nccl-tests' ``algbw * 2 (n - 1) / n``) cannot exceed ``rate / (8 n)``. With ``--per-peer``
each rank sits behind its own link of the rate instead (``shaped_link.PeerLinks``; the
thrifty peers then listen on their veth and the coordinator runs in the hub), and the bound
is ``rate / 8``. ``--latency-ms`` sets the filter's queue (200 ms). Columns:

- ``busbw``: the bytes one rank sent per second (its wire bytes for thrifty; for Gloo,
  which does not say, the ring's ``2 (n - 1) / n * S``);
- ``eff. busbw``: the same with the fp32 bytes (the quantized rows' effective bandwidth);
- ``link MB`` and ``util``: the filter's bytes per all-reduce, and that over
  ``seconds * rate`` (per link with ``--per-peer``, where the MB are all uploads together);
- ``drops``: packets the filter's full queue dropped during the timed runs (TCP resends
  them);
- ``vs Gloo``: the effective busbw over Gloo's; ``speed-up over fp32`` and ``byte ratio``:
  fp32 thrifty's time and wire bytes over the quantized row's.

Needs root and ``tc``; prints why not and exits 2 otherwise. ``--quick`` runs one iteration
of 4 MB at 100 mbit unless told otherwise.

Examples
--------
>>> from benches.allreduce_shaped import theoretical_busbw
>>> round(theoretical_busbw(100_000_000, 4) / 1e6, 3)  # MB/s: rate / (8 n)
3.125
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root goes on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benches.workloads import shaped_link
from benches.workloads.machine import cpu_name
from thrifty.collective._bandwidth import PeerPool, parse_size, record

QUANTIZATIONS: tuple[str | None, ...] = (None, "int8", "fp4")
#: Above this many seconds per fp32 all-reduce the warm-up runs on 1 MiB only: it opens the
#: connections, and the first touch of a big array's pages is lost in such a run anyway.
_FULL_WARMUP_S = 5.0


def theoretical_busbw(rate_bps: int, world: int) -> float:
    """The bus bandwidth (bytes/s) of a ring all-reduce when all ranks share ``rate_bps``."""
    return rate_bps / 8 / world


# Inside the namespace -----------------------------------------------------------------


class PerPeerPool(PeerPool):
    """``world`` peers of ``backend``, rank ``i`` inside ``namespaces[i]`` (a
    :class:`~benches.workloads.shaped_link.PeerLinks` peer); the coordinator (thrifty) runs
    here, in the hub, at ``hub_address``; Gloo's store at rank 0."""

    def __init__(
        self, backend: str, world: int, namespaces: Sequence[str], hub_address: str
    ) -> None:
        from benches.allreduce_vs_gloo import _gloo_peer
        from thrifty import collective
        from thrifty.collective._bandwidth import _SECRET, _thrifty_peer

        self.backend = backend
        self.world = world
        self._coordinator = None
        spaces = tuple(namespaces)
        if backend == "thrifty":
            self._coordinator = collective.Coordinator(bind=f"{hub_address}:0", secret=_SECRET)
            # Listening on every interface: the other peers reach it through its veth.
            everywhere = functools.partial(_thrifty_peer, bind_host="0.0.0.0", shared_memory=False)
            peer = shaped_link.EnterThenCall(everywhere, spaces)
            self._start(peer, self._coordinator.address)
        else:
            os.environ["GLOO_SOCKET_IFNAME"] = "eth0"
            # A fresh namespace has every port free.
            self._start(
                shaped_link.EnterThenCall(_gloo_peer, spaces),
                f"{shaped_link.PeerLinks.address(0)}:29500",
            )


def measure(
    *,
    rate_bps: int,
    world: int,
    sizes: Sequence[int],
    iters: int,
    per_peer: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every (backend, size, quantization) on this namespace's shaped loopback, or, with
    ``per_peer`` (a :class:`~benches.workloads.shaped_link.PeerLinks` name), with each rank
    behind its own link."""
    from benches.allreduce_vs_gloo import peer_pool

    # Gloo picks its interface from the host name, whose address is not in the namespace.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # ... and c10d warns that it cannot resolve the peers' names back, once per rank.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    spaces = [f"{per_peer}-{i}" for i in range(world)] if per_peer else []

    def link_counters() -> tuple[int, int]:
        """Bytes sent through the filters, and packets they dropped (a full queue)."""
        prefixes = [["ip", "netns", "exec", p] for p in spaces] if per_peer else [[]]
        stats = [shaped_link.qdisc_stats(p, "eth0" if per_peer else "lo") for p in prefixes]
        return sum(s.bytes for s in stats), sum(s.drops for s in stats)

    rows: list[dict[str, Any]] = []
    for backend in ("thrifty", "gloo"):
        kinds = QUANTIZATIONS if backend == "thrifty" else (None,)
        pool = (
            PerPeerPool(backend, world, spaces, shaped_link.PeerLinks.hub_address)
            if per_peer
            else peer_pool(backend, world)
        )
        with pool:
            for size in sizes:
                for quantize in kinds:
                    ideal = 2 * (world - 1) * size * 8 / rate_bps / (world if per_peer else 1)
                    warm = size if ideal < _FULL_WARMUP_S else 1 << 20
                    pool.run(warm, quantize=quantize, iters=1)
                    before = link_counters()
                    started = time.perf_counter()
                    seconds, wire = pool.run(size, quantize=quantize, iters=iters)
                    wall = time.perf_counter() - started
                    after = link_counters()
                    rec = record(backend, world, size, quantize, seconds=seconds, wire=wire)
                    rows.append(
                        {
                            **rec.to_dict(),
                            "rate_bps": rate_bps,
                            "iters": iters,
                            "wall_seconds": wall / iters,
                            "link_bytes": (after[0] - before[0]) / iters,
                            "link_drops": after[1] - before[1],
                            "per_peer": bool(per_peer),
                        }
                    )
                    if progress:
                        print(
                            f"  {backend} {quantize or 'fp32'} {size >> 20} MB: {seconds:.3f} s",
                            file=sys.stderr,
                            flush=True,
                        )
    return rows


# Outside: one namespace per rate --------------------------------------------------------


def run_rate(
    rate: str,
    *,
    world: int,
    sizes: Sequence[int],
    iters: int,
    progress: bool,
    per_peer: bool = False,
    latency_ms: float = 200.0,
) -> list[dict[str, Any]]:
    """Create the shaped link of ``rate`` (one shared, or one per peer) and measure inside
    it (a re-run of this script)."""
    rate_bps = shaped_link.parse_rate(rate, "rates")
    moved = sum(2 * (world - 1) * s for s in sizes) * (iters + 1) * 2.5  # fp32 + Gloo + rest
    timeout = moved * 8 / rate_bps / (world if per_peer else 1) * 3 + 300
    link: shaped_link.ShapedLink | shaped_link.PeerLinks = (
        shaped_link.PeerLinks(world, rate_bps, latency_ms=latency_ms)
        if per_peer
        else shaped_link.ShapedLink(rate_bps, latency_ms=latency_ms)
    )
    with tempfile.TemporaryDirectory() as folder, link:
        out = Path(folder) / "rows.json"
        argv = [
            sys.executable, str(Path(__file__).resolve()), "--inside", str(out),
            "--rates", str(rate_bps), "--world", str(world), "--iters", str(iters),
            "--sizes", *(str(s) for s in sizes),
        ]  # fmt: skip
        if per_peer:
            argv += ["--per-peer-namespaces", link.name]
        if progress:
            print(f"{rate}: namespace {link.name}, burst {link.burst} B", file=sys.stderr)
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        link.run(argv, timeout=timeout, env={"PYTHONPATH": path}, cwd=root)
        rows: list[dict[str, Any]] = json.loads(out.read_text())
    for row in rows:
        row["rate"] = f"{rate} per peer" if per_peer else rate
        row["latency_ms"] = latency_ms
    return rows


def _cell(row: dict[str, Any]) -> tuple[int, int, int]:
    return row["rate_bps"], row["world"], row["size_bytes"]


def annotate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the derived columns: busbw on the wire, utilisation, ratios to Gloo and fp32."""
    for row in rows:
        n, size, seconds = row["world"], row["size_bytes"], row["seconds"]
        ring = shaped_link.ring_bytes(size, n)
        per_rank = row["wire_bytes"] if row["wire_bytes"] is not None else ring
        row["wire_bytes_assumed"] = row["wire_bytes"] is None
        row["busbw_wire_mbps"] = per_rank / seconds / 1e6
        row["busbw_effective_mbps"] = row["busbw_gbps"] * 1e3
        # One link per peer: each carries one rank's share, and the rate is per link.
        links = n if row["per_peer"] else 1
        row["busbw_ideal_mbps"] = theoretical_busbw(row["rate_bps"] * links, n) / 1e6
        row["link_utilisation"] = shaped_link.link_utilisation(
            round(row["link_bytes"] / links), seconds, row["rate_bps"]
        )
        row["ring_utilisation"] = shaped_link.link_utilisation(
            per_rank * n // links, seconds, row["rate_bps"]
        )
    gloo = {_cell(r): r for r in rows if r["backend"] == "gloo"}
    fp32 = {_cell(r): r for r in rows if r["backend"] == "thrifty" and r["quantize"] is None}
    for row in rows:
        base = gloo.get(_cell(row))
        row["vs_gloo"] = row["busbw_gbps"] / base["busbw_gbps"] if base else None
        ref = fp32.get(_cell(row))
        quantized = row["backend"] == "thrifty" and row["quantize"] is not None
        if ref and quantized and row["wire_bytes"]:
            row["speedup_over_fp32"] = ref["seconds"] / row["seconds"]
            row["byte_ratio"] = ref["wire_bytes"] / row["wire_bytes"]
        else:
            row["speedup_over_fp32"] = row["byte_ratio"] = None
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table of :func:`annotate`'s rows."""
    head = (
        "| rate | size | backend | seconds | busbw MB/s | eff. busbw MB/s | ideal busbw MB/s "
        "| link MB | drops | util | vs Gloo | speed-up over fp32 | byte ratio |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        name = f"{r['backend']} {r['quantize'] or 'fp32'}"
        wire = f"{r['busbw_wire_mbps']:.2f}" + ("*" if r["wire_bytes_assumed"] else "")
        ratio = f"{r['vs_gloo']:.2f}x" if r["vs_gloo"] is not None else ""
        speed = f"{r['speedup_over_fp32']:.2f}x" if r["speedup_over_fp32"] else ""
        saved = f"{r['byte_ratio']:.2f}x" if r["byte_ratio"] else ""
        lines.append(
            f"| {r['rate']} | {r['size_bytes'] >> 20} MB | {name} | {r['seconds']:.3f} "
            f"| {wire} | {r['busbw_effective_mbps']:.2f} | {r['busbw_ideal_mbps']:.2f} "
            f"| {r['link_bytes'] / 1e6:.1f} | {r.get('link_drops', '')} "
            f"| {r['link_utilisation']:.0%} | {ratio} "
            f"| {speed} | {saved} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rates", nargs="+", default=None, help="tc rates (100mbit 1gbit)")
    parser.add_argument("--sizes", nargs="+", default=None, help="array sizes (16MB 64MB)")
    parser.add_argument("--world", type=int, default=4)
    parser.add_argument(
        "--iters", type=int, default=None, help="timed all-reduces per cell (2, 3 above 100mbit)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--quick", action="store_true", help="4 MB at 100mbit, one iteration")
    parser.add_argument(
        "--per-peer",
        action="store_true",
        help="one shaped link per peer (veth into a bridge) instead of one shared loopback",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=200.0,
        help="tbf's latency: how long a packet may queue before it is dropped (200)",
    )
    parser.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--per-peer-namespaces", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rates = args.rates or (["100mbit"] if args.quick else ["100mbit", "1gbit"])
    sizes = [parse_size(s) for s in args.sizes or (["4MB"] if args.quick else ["16MB", "64MB"])]

    if args.inside is not None:
        rows = measure(
            rate_bps=shaped_link.parse_rate(rates[0], "rates"),
            world=args.world,
            sizes=sizes,
            iters=args.iters,
            per_peer=args.per_peer_namespaces,
        )
        Path(args.inside).write_text(json.dumps(rows))
        return 0

    reason = shaped_link.available()
    if reason is not None:
        print(f"cannot shape a link here: {reason}", file=sys.stderr)
        return 2
    rows = []
    for rate in rates:
        bits = shaped_link.parse_rate(rate, "rates")
        iters = args.iters or (1 if args.quick else 2 if bits <= 100_000_000 else 3)
        rows += run_rate(
            rate,
            world=args.world,
            sizes=sizes,
            iters=iters,
            progress=True,
            per_peer=args.per_peer,
            latency_ms=args.latency_ms,
        )
    rows = annotate(rows)
    cpu = cpu_name()
    if args.json:
        print(json.dumps({"cpu": cpu, "rows": rows}, indent=1))
    else:
        links = "one per peer (veth into a bridge)" if args.per_peer else "a shared loopback"
        print(f"CPU: {cpu}; world {args.world}; tbf links: {links}\n")
        print(markdown(rows))
        print("\n* Gloo does not report its bytes: its busbw assumes the ring's 2 (n - 1) / n * S.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
