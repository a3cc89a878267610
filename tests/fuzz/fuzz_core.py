"""The fuzz harness: one registry entry per public callable, seeded cases, one verdict rule.

An entry draws a :class:`Case` from a seeded ``numpy.random.Generator``: the call, whether
its input is valid (``True``: it must succeed; ``False``: it must be refused; ``None``: it
may go either way) and a check of the result against a reference or the documented
invariants. Every call ends in one of these verdicts:

* it returned, and the check passed (``ok``);
* it raised a named :class:`thrifty.ThriftyError` other than ``InternalError`` on input that
  was not known to be valid (``refused``);
* it let an exception of the caller's own code through unchanged (``passed-through``);
* it hit a bug already known and routed (``known``, counted apart, see :class:`Case`);
* anything else is a failure: a bare ``ValueError``, ``TypeError``, ... from inside
  thrifty, an ``InternalError`` (a caught Rust panic), a wrong result, invalid input
  accepted, valid input refused, or a call that ran past :data:`HANG_S`.

A failure names the entry and the seed of its case: ``reproduce(name, base, index)`` (or
``python tests/fuzz/fuzz_run.py NAME BASE INDEX``) draws the same case again.
"""

from __future__ import annotations

import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import thrifty

# A single call this slow is reported as a hang: no case is drawn large enough to need it.
HANG_S = 60.0


class Mismatch(AssertionError):  # noqa: N818 (reads as the verdict it is)
    """A check found a wrong result (raised by the harness's checks, never by thrifty)."""


class UserError(Exception):
    """Raised on purpose by a caller-supplied callable; thrifty must let it through."""


def expect(condition: Any, message: str) -> None:
    """Raise :class:`Mismatch` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Mismatch(message)


@dataclass
class Case:
    """One call: what to run, whether it must succeed or fail, and how to check the result."""

    call: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    valid: bool | None = None
    check: Callable[[Any], None] | None = None
    label: str = ""
    # A failure this case would show is a known bug, routed to the Rust core and described
    # in ``known``: it is counted apart. ``skip``: the call would kill the process (an
    # abort), so it is not made at all.
    known: str = ""
    skip: bool = False

    def describe(self) -> str:
        name = getattr(self.call, "__qualname__", repr(self.call))
        parts = [summary(a) for a in self.args]
        parts += [f"{k}={summary(v)}" for k, v in self.kwargs.items()]
        return f"{name}({', '.join(parts)})  [{self.label}; valid={self.valid}]"


@dataclass(frozen=True)
class Entry:
    """The fuzzing of one or more public names.

    ``covers`` lists the qualified public names (``"hamming.cdist"``) the cases exercise;
    ``fast_calls`` is how many cases ``make test`` runs, ``weight`` the entry's share of the
    long run (lower for entries whose calls are slow).
    """

    name: str
    generate: Callable[[np.random.Generator], Case]
    covers: tuple[str, ...]
    fast_calls: int = 60
    weight: float = 1.0


REGISTRY: dict[str, Entry] = {}


def entry(
    name: str, *, covers: Iterable[str] = (), fast_calls: int = 60, weight: float = 1.0
) -> Callable[[Callable[[np.random.Generator], Case]], Callable[[np.random.Generator], Case]]:
    """Register the decorated case generator under ``name`` (which it also covers)."""

    def register(
        generate: Callable[[np.random.Generator], Case],
    ) -> Callable[[np.random.Generator], Case]:
        if name in REGISTRY:
            raise ValueError(f"fuzz entry {name!r} registered twice")
        names = tuple(dict.fromkeys([name, *covers]))
        REGISTRY[name] = Entry(name, generate, names, fast_calls, weight)
        return generate

    return register


def case_seed(name: str, base: int, index: int) -> np.random.SeedSequence:
    """The seed of case ``index`` of entry ``name`` in a run seeded with ``base``."""
    return np.random.SeedSequence([base, zlib.crc32(name.encode()), index])


@dataclass
class Verdict:
    name: str
    base: int
    index: int
    outcome: str  # "ok", "refused", "passed-through", "known" or "failure"
    detail: str = ""
    seconds: float = 0.0
    warning: str = ""


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f for f in frames if "/thrifty/" in f.filename] or frames
    last = inside[-1]
    return f"{last.filename.split('/python/')[-1]}:{last.lineno} in {last.name}"


def run_case(case: Case) -> tuple[str, str]:
    """Run ``case`` and judge it: ``(outcome, detail)``."""
    try:
        result = case.call(*case.args, **case.kwargs)
    except thrifty.InternalError as error:
        return "failure", f"InternalError: {error}"
    except thrifty.ThriftyError as error:
        if case.valid is True:
            return "failure", f"valid input refused: {type(error).__name__}: {error}"
        return "refused", type(error).__name__
    except UserError:
        return "passed-through", "UserError"
    except Mismatch as error:
        return "failure", f"wrong result: {error}"
    except Exception as error:
        return "failure", f"{type(error).__name__} at {_where(error)}: {error}"
    if case.valid is False:
        return "failure", f"invalid input accepted, returned {summary(result)}"
    if case.check is not None:
        try:
            case.check(result)
        except Mismatch as error:
            return "failure", f"wrong result: {error}"
        except Exception as error:
            return "failure", f"result check raised {type(error).__name__}: {error}"
    return "ok", ""


def run_one(name: str, base: int, index: int) -> Verdict:
    """Draw case ``index`` of entry ``name`` and judge it."""
    generate = REGISTRY[name].generate
    rng = np.random.default_rng(case_seed(name, base, index))
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            case = generate(rng)
        except Exception as error:
            detail = f"the generator itself raised {type(error).__name__}: {error}"
            return Verdict(name, base, index, "failure", detail + "\n" + traceback.format_exc())
        if case.skip:
            outcome, detail = "known", case.known
        else:
            outcome, detail = run_case(case)
            if outcome == "failure" and case.known:
                outcome, detail = "known", f"{case.known}: {detail}"
    seconds = time.perf_counter() - started
    if outcome == "failure":
        detail = f"{detail}\n    call: {case.describe()}"
    elif seconds > HANG_S:
        outcome, detail = "failure", f"took {seconds:.1f} s: {case.describe()}"
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    note = f"{runtime[0].message} ({case.label})" if runtime else ""
    return Verdict(name, base, index, outcome, detail, seconds, note)


def reproduce(name: str, base: int, index: int) -> Case:
    """The case of ``(name, base, index)``, to run under a debugger."""
    return REGISTRY[name].generate(np.random.default_rng(case_seed(name, base, index)))


@dataclass
class Tally:
    """Counts and failures of a run, per entry."""

    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Verdict] = field(default_factory=list)
    seconds: Counter[str] = field(default_factory=Counter)
    warnings: dict[str, str] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        self.outcomes.setdefault(verdict.name, Counter())[verdict.outcome] += 1
        self.seconds[verdict.name] += verdict.seconds
        if verdict.outcome == "failure":
            self.failures.append(verdict)
        if verdict.warning and verdict.name not in self.warnings:
            self.warnings[verdict.name] = verdict.warning

    def distinct_failures(self) -> list[str]:
        """One line per kind of failure (entry and first line of the detail), with how many
        cases showed it and the replay of the first."""
        kinds: dict[tuple[str, str], list[Verdict]] = {}
        for verdict in self.failures:
            key = (verdict.name, verdict.detail.split("\n")[0][:160])
            kinds.setdefault(key, []).append(verdict)
        return [
            f"FAILURE x{len(cases)} {name} (replay {cases[0].base} {cases[0].index}): "
            f"{cases[0].detail}"
            for (name, _), cases in kinds.items()
        ]

    @property
    def calls(self) -> int:
        return sum(sum(c.values()) for c in self.outcomes.values())

    def report(self) -> str:
        lines = [
            f"{'entry':40} {'calls':>8} {'ok':>8} {'refused':>8} {'known':>6} {'failed':>7} "
            f"{'s':>8}"
        ]
        for name in sorted(self.outcomes):
            c = self.outcomes[name]
            lines.append(
                f"{name:40} {sum(c.values()):8d} {c['ok'] + c['passed-through']:8d} "
                f"{c['refused']:8d} {c['known']:6d} {c['failure']:7d} {self.seconds[name]:8.1f}"
            )
        lines.append(f"total calls: {self.calls}, failures: {len(self.failures)}")
        lines += self.distinct_failures()
        for name, note in sorted(self.warnings.items()):
            lines.append(f"first RuntimeWarning of {name}: {note}")
        return "\n".join(lines)


def summary(value: Any, depth: int = 0) -> str:
    """A short description of an argument: arrays by dtype, shape, layout and a few values."""
    if isinstance(value, np.ndarray):
        layout = "C" if value.flags.c_contiguous else "F" if value.flags.f_contiguous else "strided"
        flat = value.reshape(-1)[:6] if value.size else value.reshape(-1)
        try:
            shown = np.array2string(flat, threshold=6, precision=4)
        except Exception:
            shown = "?"
        return f"ndarray({value.dtype}, shape={value.shape}, {layout}, {shown})"
    module = type(value).__module__.split(".")[0]
    if module == "torch" and hasattr(value, "shape"):
        return f"tensor({value.dtype}, shape={tuple(value.shape)})"
    if isinstance(value, (list, tuple)) and depth < 2:
        inner = ", ".join(summary(v, depth + 1) for v in list(value)[:4])
        more = ", ..." if len(value) > 4 else ""
        return f"{type(value).__name__}[{len(value)}]({inner}{more})"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
