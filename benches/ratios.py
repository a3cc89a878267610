"""Print, for every benchmark group, each baseline's time over ours: the speed-up.

Usage: ``python benches/ratios.py benches/.last.json [--stat median|min] [--markdown]``

Benchmarks say which side they are on in ``extra_info["role"]`` (``"ours"`` or
``"baseline"``) and name themselves in ``extra_info["label"]``; the cost-matrix ones also
record ``peak_bytes`` (measured) and ``held_bytes`` (the trajectory they keep), which are
printed in MiB beside the times.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 2**20


@dataclass(frozen=True)
class Entry:
    label: str
    role: str
    seconds: float
    peak_bytes: int | None
    held_bytes: int | None


def load(path: Path, stat: str) -> dict[str, list[Entry]]:
    """The benchmarks of a pytest-benchmark JSON file, by group, in file order."""
    data: dict[str, Any] = json.loads(path.read_text())
    groups: dict[str, list[Entry]] = defaultdict(list)
    for bench in data["benchmarks"]:
        info: dict[str, Any] = bench.get("extra_info", {})
        groups[bench.get("group") or bench["name"]].append(
            Entry(
                label=str(info.get("label", bench["name"])),
                role=str(info.get("role", "unknown")),
                seconds=float(bench["stats"][stat]),
                peak_bytes=info.get("peak_bytes"),
                held_bytes=info.get("held_bytes"),
            )
        )
    return dict(groups)


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _memory(entry: Entry) -> str:
    """Measured peak, then the trajectory the code holds by design, both in MiB."""
    held = "" if entry.held_bytes is None else f"(holds {entry.held_bytes / MIB:.1f})"
    if entry.peak_bytes is None:
        return held
    return f"{entry.peak_bytes / MIB:.0f} {held}".rstrip()


def rows(groups: dict[str, list[Entry]]) -> list[list[str]]:
    """One row per (ours, baseline) pair of each group."""
    table: list[list[str]] = []
    for group, entries in groups.items():
        ours = [e for e in entries if e.role == "ours"]
        baselines = [e for e in entries if e.role == "baseline"]
        if not ours or not baselines:
            for e in entries:
                table.append([group, e.label, _time(e.seconds), "-", "-", "-", _memory(e), ""])
            continue
        for o in ours:
            for b in baselines:
                table.append(
                    [
                        group,
                        o.label,
                        _time(o.seconds),
                        b.label,
                        _time(b.seconds),
                        f"{b.seconds / o.seconds:.1f}x",
                        _memory(o),
                        _memory(b),
                    ]
                )
    return table


def render(table: list[list[str]], stat: str, markdown: bool) -> str:
    header = [
        "group",
        "ours",
        f"ours {stat}",
        "baseline",
        f"baseline {stat}",
        "speed-up",
        "ours peak MiB",
        "baseline peak MiB",
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in table]
        return "\n".join(lines)
    widths = [max(len(r[c]) for r in [header, *table]) for c in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *table]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--stat", choices=["median", "min", "mean"], default="median")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args()
    table = rows(load(args.json, args.stat))
    print(render(table, args.stat, args.markdown))


if __name__ == "__main__":
    main()
