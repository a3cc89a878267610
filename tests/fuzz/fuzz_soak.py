"""The long run: a number of calls spread over the entries by weight, in rounds.

Calls go round-robin in rounds of a few per entry, so a run cut short (a crash, a timeout)
has still touched every entry, and progress lines name the round and its seeds: a crash
of the whole process is reproduced by replaying the calls of the last round it printed.
"""

from __future__ import annotations

import faulthandler
import math
import sys
import time
from collections.abc import Callable, Sequence

from fuzz_core import HANG_S, REGISTRY, Tally, run_one


def allocation(total: int, names: Sequence[str]) -> dict[str, int]:
    """Calls per entry: proportional to weight, at least one each, summing to ``total``."""
    weights = {name: REGISTRY[name].weight for name in names}
    scale = total / sum(weights.values())
    counts = {name: max(1, math.floor(w * scale)) for name, w in weights.items()}
    short = total - sum(counts.values())
    for name in sorted(names, key=lambda n: -weights[n])[: max(short, 0)]:
        counts[name] += 1
    return counts


def soak(
    total: int,
    base: int,
    names: Sequence[str],
    *,
    log: Callable[[str], None] = print,
    per_round: int = 50,
) -> Tally:
    """Run ``total`` calls over ``names`` from seed ``base``; return the tally."""
    counts = allocation(total, names)
    done = dict.fromkeys(names, 0)
    tally = Tally()
    started = time.perf_counter()
    # A call stuck in native code cannot be interrupted; its Python stack is dumped instead.
    faulthandler.enable(file=sys.stderr)
    rounds = 0
    while any(done[n] < counts[n] for n in names):
        rounds += 1
        for name in names:
            share = max(1, round(per_round * counts[name] / max(counts.values())))
            stop = min(counts[name], done[name] + share)
            # Armed per entry and round: a stack is dumped if this stretch stalls.
            faulthandler.dump_traceback_later(HANG_S * 2 * max(stop - done[name], 1), exit=False)
            for index in range(done[name], stop):
                verdict = run_one(name, base, index)
                tally.add(verdict)
                if verdict.outcome == "failure":
                    # Logged at once: a run cut short still names what it found.
                    first_line = verdict.detail.split("\n")[0][:300]
                    log(f"FAILURE {name} (replay {base} {index}): {first_line}")
            done[name] = stop
        faulthandler.cancel_dump_traceback_later()
        if rounds % 20 == 0:
            elapsed = time.perf_counter() - started
            log(
                f"round {rounds}: {tally.calls} calls, {len(tally.failures)} failures, "
                f"{elapsed:.0f} s, {tally.calls / max(elapsed, 1e-9):.0f} calls/s"
            )
    return tally
