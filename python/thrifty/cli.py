"""The ``thrifty`` command: one subcommand group per core, ``--json`` on every output.

Examples (shell)::

    thrifty demo                    # every demo on built-in defaults
    thrifty steps grid 8 --kind edm --json
    thrifty steps path cost.npy 8 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.errors import ThriftyError

DEMOS = ("steps",)


def _emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    print(json.dumps(result, indent=2) if as_json else text(result))


def _demo(args: argparse.Namespace) -> None:
    from thrifty.steps import demo as steps_demo

    cores = DEMOS if args.core in (None, "all") else (args.core,)
    results: dict[str, Any] = {}
    for core in cores:
        if core == "steps":
            results[core] = steps_demo.run(
                out_dir=Path(args.out), quick=args.quick, progress=not args.json
            )
            if not args.json:
                print(steps_demo.format_table(results[core]))
    if args.json:
        print(json.dumps(results, indent=2))


def _steps_grid(args: argparse.Namespace) -> None:
    from thrifty import steps

    times = steps.time_grid(args.n, args.kind, shift=args.shift)
    result = {"times": times.tolist(), "sigmas": (1 - times).tolist()}
    _emit(result, args.json, lambda r: " ".join(f"{t:.6g}" for t in r["times"]))


def _steps_path(args: argparse.Namespace) -> None:
    from thrifty import steps

    cost = np.load(args.cost)
    nodes = steps.optimal_path(cost, args.k, future_weight=args.future_weight)
    total = steps.optimal_path_cost(cost, args.k, future_weight=args.future_weight)
    result = {"nodes": nodes.tolist(), "cost": total}
    _emit(result, args.json, lambda r: f"nodes {r['nodes']}  cost {r['cost']:.6g}")


def _steps_bottleneck(args: argparse.Namespace) -> None:
    from thrifty import steps

    plan = steps.bottleneck_plan(args.k)
    _emit(plan.to_dict(), args.json, lambda r: json.dumps(r, indent=1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thrifty", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)

    demo = groups.add_parser("demo", help="run the demos on built-in defaults")
    demo.add_argument("core", nargs="?", choices=(*DEMOS, "all"), default=None)
    demo.add_argument("--out", default="out", help="folder for plots (default: out)")
    demo.add_argument("--quick", action="store_true", help="smaller settings, for smoke tests")
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(run=_demo)

    steps = groups.add_parser("steps", help="sampling schedules (BOSS, Bottleneck Sampling)")
    commands = steps.add_subparsers(dest="command", required=True)
    grid = commands.add_parser("grid", help="print a time grid (0 = noise, 1 = data)")
    grid.add_argument("n", type=int)
    grid.add_argument("--kind", choices=("uniform", "edm"), default="uniform")
    grid.add_argument("--shift", type=float, default=1.0)
    grid.add_argument("--json", action="store_true")
    grid.set_defaults(run=_steps_grid)
    path = commands.add_parser("path", help="the optimal k-jump path through a saved cost matrix")
    path.add_argument("cost", help="a .npy file holding an (n+1, n+1) cost matrix")
    path.add_argument("k", type=int)
    path.add_argument("--future-weight", type=float, default=1.0)
    path.add_argument("--json", action="store_true")
    path.set_defaults(run=_steps_path)
    bottleneck = commands.add_parser("bottleneck", help="a Bottleneck Sampling plan of k steps")
    bottleneck.add_argument("k", type=int)
    bottleneck.add_argument("--json", action="store_true")
    bottleneck.set_defaults(run=_steps_bottleneck)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ThriftyError, OSError) as error:
        print(f"thrifty: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
