"""Run the fuzz registry from the command line, or replay one case.

``python tests/fuzz/fuzz_run.py [--calls N] [--seed BASE] [--only NAME ...]`` runs N calls
spread over the entries by weight and prints the table; ``python tests/fuzz/fuzz_run.py
--replay NAME BASE INDEX`` runs one case and shows it, as a failure report names it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_entries  # noqa: F401  (registers every entry)
from fuzz_core import REGISTRY, reproduce, run_case
from fuzz_soak import soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--replay", nargs=3, metavar=("NAME", "BASE", "INDEX"))
    args = parser.parse_args()
    if args.replay:
        name, base, index = args.replay[0], int(args.replay[1]), int(args.replay[2])
        case = reproduce(name, base, index)
        print(case.describe())
        print(run_case(case))
        return
    names = args.only or sorted(REGISTRY)
    tally = soak(args.calls, args.seed, names, log=print)
    print(tally.report())
    seen: dict[tuple[str, str], int] = {}
    for failure in tally.failures:
        key = (failure.name, failure.detail.split("\n")[0][:120])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 1:
            print(f"FAILURE {failure.name} {failure.base} {failure.index}: {failure.detail}")
    for (name, first), count in sorted(seen.items()):
        print(f"{count:6d} x {name}: {first}")


if __name__ == "__main__":
    main()
