"""The ``thrifty`` command: one subcommand group per core, ``--json`` on every output.

The production commands live in the package: ``coordinator``, ``steps grid|path|bottleneck``
and ``bench allreduce`` (a network check, as nccl-tests reports it). ``demo`` and
``bench diloco`` run files of the source repository (``examples/``, ``benches/``), which a
wheel does not install: they find them in the checkout of an editable install, in the
current directory or one above it, or where ``--examples`` / ``--benches`` (or
``THRIFTY_EXAMPLES`` / ``THRIFTY_BENCHES``) say; without a checkout they exit with status 2
and say how to get one.

Examples (shell)::

    thrifty steps grid 8 --kind edm --json
    thrifty steps path cost.npy 8 --json
    thrifty coordinator --bind 0.0.0.0:4800 --json   # THRIFTY_SECRET from the environment
    thrifty bench allreduce --world 4 --size 64MB --json
    thrifty demo                    # every demo on built-in defaults (a source checkout)
    thrifty demo collective --quick
    thrifty demo diloco --quick
    thrifty bench diloco --methods ddp diloco streaming-fp4 --json
    sudo thrifty bench diloco --link-rate 100mbit --plot diloco.png
    thrifty demo hamming --quick --json
    thrifty demo coreset --quick
    thrifty demo schedule --quick --json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from thrifty.errors import ThriftyError

#: The cores with a demo: ``examples/<core>_demo.py`` in the source repository. Each is
#: imported only when it runs: diloco, coreset and schedule need torch, which other users
#: may lack.
DEMOS = ("steps", "collective", "diloco", "hamming", "coreset", "schedule")


def _emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    print(json.dumps(result, indent=2) if as_json else text(result))


#: This package's folder: in a source checkout's editable install, ``<checkout>/python/thrifty``.
_PACKAGE = Path(__file__).resolve().parent


def _source_folder(name: str, stem: str, given: str | None, variable: str) -> Path | None:
    """The folder ``name`` of a source checkout that holds ``<stem>.py``.

    In order: ``given`` (the command-line option), the environment ``variable``, the
    checkout of an editable install (``python/thrifty`` two levels down), then the current
    directory and each of its parents. None when no checkout is found.
    """
    if given is not None:
        return Path(given)
    if os.environ.get(variable):
        return Path(os.environ[variable])
    # A wheel's site-packages is no checkout, even in a virtual environment that sits inside
    # one: beside the package, only an editable install's layout counts.
    roots = [_PACKAGE.parent.parent] if _PACKAGE.parent.name == "python" else []
    cwd = Path.cwd().resolve()
    roots += [cwd, *cwd.parents]
    for root in roots:
        if (root / name / f"{stem}.py").is_file():
            return root / name
    return None


def _import_source(
    folder: Path | None, stems: Sequence[str], *, command: str, option: str, how: str
) -> list[ModuleType]:
    """Import ``<folder>/<stem>.py`` for each stem, with the folder's parent (the repository
    root, which holds ``benches/``) on ``sys.path``, so that the modules and the processes
    they spawn import ``benches.workloads`` as the tests do.

    Raises ``FileNotFoundError`` (exit status 2), saying how to get the files, when any is
    missing.
    """
    missing = [] if folder is None else [s for s in stems if not (folder / f"{s}.py").is_file()]
    if folder is None or missing:
        where = (
            f"no {option}/ folder in {Path.cwd()} or above it, nor beside the package at {_PACKAGE}"
            if folder is None
            else f"no {missing[0]}.py in {folder}"
        )
        variable = f"THRIFTY_{option.upper()}"
        raise FileNotFoundError(
            f"{command} runs the {option}/ folder of thrifty's source repository, which a "
            f"wheel does not install ({where}). To get it, clone the repository and {how}; "
            f"or run it from inside a checkout, or point --{option} (or {variable}) at the "
            f"{option}/ folder of one."
        )
    root = str(folder.resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return [importlib.import_module(f"{folder.name}.{stem}") for stem in stems]


def _demo(args: argparse.Namespace) -> None:
    cores = DEMOS if args.core in (None, "all") else (args.core,)
    folder = _source_folder("examples", f"{cores[0]}_demo", args.examples, "THRIFTY_EXAMPLES")
    modules = _import_source(
        folder,
        [f"{core}_demo" for core in cores],
        command="thrifty demo",
        option="examples",
        how="run `make demo` in it",
    )
    results: dict[str, Any] = {}
    for core, module in zip(cores, modules, strict=True):
        results[core] = module.run(out_dir=Path(args.out), quick=args.quick, progress=not args.json)
        if not args.json:
            print(module.format_report(results[core]))
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


def _bench_allreduce(args: argparse.Namespace) -> None:
    from thrifty.collective import _bandwidth

    sizes = [_bandwidth.parse_size(text) for text in args.size]
    quantizations = tuple(None if q == "none" else q for q in args.quantize)
    records = _bandwidth.all_reduce_bandwidth(
        world=args.world,
        sizes=sizes,
        quantizations=quantizations,
        iters=args.iters,
        progress=not args.json,
    )
    if args.plot:
        _bandwidth.plot(records, args.plot)
    result = {"records": [r.to_dict() for r in records], "plot": args.plot}
    _emit(result, args.json, lambda _: _bandwidth.format_table(records))


def _bench_diloco(args: argparse.Namespace) -> None:
    folder = _source_folder("benches", "diloco_vs_ddp", args.benches, "THRIFTY_BENCHES")
    (driver,) = _import_source(
        folder,
        ["diloco_vs_ddp"],
        command="thrifty bench diloco",
        option="benches",
        how="run `make build`, then `.venv/bin/thrifty bench diloco`, in it",
    )
    methods = driver.METHODS if args.methods is None else args.methods
    unknown = [m for m in methods if m not in driver.METHODS]
    if unknown:
        # The methods are the driver's, known only once it is found: refuse as argparse would.
        args.parser.error(
            f"argument --methods: invalid choice: {unknown[0]!r} "
            f"(choose from {', '.join(map(repr, driver.METHODS))})"
        )
    result = driver.run(
        methods,
        world=args.world,
        steps=args.steps,
        sync_every=args.sync_every,
        quick=args.quick,
        progress=not args.json,
        plot=args.plot,
        corpus=args.corpus,
        link_rate=args.link_rate,
        target_loss=args.target_loss,
        max_steps=args.max_steps,
        outer_lr=args.outer_lr,
    )

    def text(r: dict[str, Any]) -> str:
        return str(driver.format_table(r)) + (f"\nplot: {r['plot']}" if r["plot"] else "")

    _emit(result, args.json, text)


def _coordinator(args: argparse.Namespace) -> None:
    """Serve until Ctrl-C or SIGTERM, printing the address, then every membership change."""
    from thrifty.collective import Coordinator

    def say(event: dict[str, Any], text: str) -> None:
        print(json.dumps(event) if args.json else text, flush=True)

    # Ctrl-C and SIGTERM only ask the loop to stop, so one arriving while a line is being
    # printed cannot escape as a KeyboardInterrupt.
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda signum, frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with Coordinator(
            args.bind,
            secret=args.secret,
            heartbeat_timeout_s=args.heartbeat_timeout,
            fellows=args.fellow,
        ) as coordinator:
            say(
                {"event": "listening", "address": coordinator.address},
                f"thrifty coordinator listening on {coordinator.address} (Ctrl-C stops it)",
            )
            seen = None
            while not stop.wait(0.1):
                s = coordinator.snapshot()
                state = (s.epoch, s.members, s.pending, s.broken)
                if state == seen:
                    continue
                seen = state
                say(
                    {
                        "event": "membership",
                        "epoch": s.epoch,
                        "members": [f"{m:016x}" for m in s.members],
                        "pending": [f"{p:016x}" for p in s.pending],
                        "broken": s.broken,
                    },
                    f"epoch {s.epoch}: {len(s.members)} members, {len(s.pending)} pending"
                    + (f" (broken: {s.broken})" if s.broken else ""),
                )
        say({"event": "stopped"}, "thrifty coordinator stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thrifty", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)

    demo = groups.add_parser(
        "demo", help="run the demos on built-in defaults (examples/ of a source checkout)"
    )
    demo.add_argument("core", nargs="?", choices=(*DEMOS, "all"), default=None)
    demo.add_argument("--out", default="out", help="folder for plots (default: out)")
    demo.add_argument("--quick", action="store_true", help="smaller settings, for smoke tests")
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.add_argument(
        "--examples",
        default=None,
        metavar="DIR",
        help="the examples/ folder of a source checkout (default: $THRIFTY_EXAMPLES, or the "
        "checkout of an editable install)",
    )
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

    bench_group = groups.add_parser("bench", help="measure a core")
    benches = bench_group.add_subparsers(dest="bench", required=True)
    allreduce = benches.add_parser(
        "allreduce",
        help="thrifty.collective's all-reduce bandwidth on local processes (algbw, busbw)",
    )
    allreduce.add_argument("--world", type=int, default=4, help="processes (default 4)")
    allreduce.add_argument(
        "--size", nargs="+", default=["16MB"], help="array sizes, e.g. 1MB 64MB (default 16MB)"
    )
    allreduce.add_argument(
        "--quantize",
        nargs="+",
        choices=("none", "int8", "fp8", "fp4"),
        default=["none", "int8", "fp8", "fp4"],
    )
    allreduce.add_argument("--iters", type=int, default=5, help="timed rounds (default 5)")
    allreduce.add_argument("--plot", default=None, help="save a bandwidth plot to this file")
    allreduce.add_argument("--json", action="store_true")
    allreduce.set_defaults(run=_bench_allreduce)

    diloco = benches.add_parser(
        "diloco",
        help="DDP beside DiLoCo, Streaming DiLoCo, NoLoCo and SPSA: bytes, time, loss "
        "(benches/ of a source checkout)",
    )
    diloco.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help="methods to run, in the driver's order, DDP first (default: all of "
        "METHODS in benches/diloco_vs_ddp.py)",
    )
    diloco.add_argument("--world", type=int, default=4, help="worker processes (default 4)")
    diloco.add_argument(
        "--steps", type=int, default=None, help="inner steps (default 300; 60 with --quick)"
    )
    diloco.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="inner steps of every method but DDP, at least --steps (default: --steps): a "
        "budget in which to reach DDP's final loss",
    )
    diloco.add_argument(
        "--sync-every",
        type=int,
        default=None,
        help="H of DiLoCo and NoLoCo (default 25; 20 with --quick)",
    )
    diloco.add_argument(
        "--outer-lr",
        type=float,
        default=None,
        help="outer lr of DiLoCo, Streaming DiLoCo and NoLoCo (default 0.7)",
    )
    diloco.add_argument("--quick", action="store_true", help="smaller settings, for smoke tests")
    diloco.add_argument(
        "--corpus",
        choices=("pydoc", "markov"),
        default="pydoc",
        help="what the model learns: English text, Python's documentation as bytes (default), "
        "or a generated Markov language with a known entropy floor",
    )
    diloco.add_argument(
        "--link-rate",
        default=None,
        metavar="RATE",
        help="run everything inside a network namespace whose loopback is limited to RATE "
        "(tc's notation: 100mbit, 1gbit), one link all workers share; needs root and tc",
    )
    diloco.add_argument(
        "--target-loss",
        type=float,
        default=None,
        metavar="LOSS",
        help="report the wall-clock seconds to this held-out loss (default: DDP's final one)",
    )
    diloco.add_argument(
        "--plot",
        default=None,
        help="save the loss curves (against wall-clock and step) and bytes to this file",
    )
    diloco.add_argument("--json", action="store_true")
    diloco.add_argument(
        "--benches",
        default=None,
        metavar="DIR",
        help="the benches/ folder of a source checkout (default: $THRIFTY_BENCHES, or the "
        "checkout of an editable install)",
    )
    diloco.set_defaults(run=_bench_diloco, parser=diloco)

    coordinator = groups.add_parser(
        "coordinator", help="run a thrifty.collective coordinator until Ctrl-C or SIGTERM"
    )
    coordinator.add_argument(
        "--bind", default="0.0.0.0:4800", help="HOST:PORT to listen on (default 0.0.0.0:4800)"
    )
    coordinator.add_argument(
        "--secret", default=None, help="the shared secret (default: $THRIFTY_SECRET)"
    )
    coordinator.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=5.0,
        help="seconds of silence after which a peer is lost (default 5)",
    )
    coordinator.add_argument(
        "--fellow",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="another coordinator the peers were given (repeat for each); a coordinator "
        "without a world of its own sends peers to the fellow that has one",
    )
    coordinator.add_argument("--json", action="store_true", help="print one JSON object a line")
    coordinator.set_defaults(run=_coordinator)
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
