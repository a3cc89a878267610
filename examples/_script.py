"""What ``python examples/<core>_demo.py`` runs: the options of ``thrifty demo``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def main(
    run: Callable[..., dict[str, Any]],
    format_report: Callable[[dict[str, Any]], str],
    description: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Run one demo with ``--out``, ``--quick`` and ``--json``; print its table or JSON."""
    parser = argparse.ArgumentParser(description=description.strip().splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for plots (default: out)")
    parser.add_argument("--quick", action="store_true", help="smaller settings, for smoke tests")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    result = run(out_dir=Path(args.out), quick=args.quick, progress=not args.json)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0
