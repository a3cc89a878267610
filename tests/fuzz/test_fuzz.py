"""The fuzz registry as tests: a short run of every entry, its coverage, and the long run.

``FUZZ_SEED`` (default 0) seeds the short run; ``FUZZ_CALLS`` (default 10**6) sizes the
long one (``pytest -m slow tests/fuzz``, which ``make soak`` runs). A failure names the
entry, the seed and the index of its case: ``python tests/fuzz/fuzz_run.py --replay NAME
BASE INDEX`` draws it again.
"""

from __future__ import annotations

import importlib
import inspect
import os
import typing
from dataclasses import is_dataclass

import fuzz_entries
import pytest
from fuzz_core import REGISTRY, run_one
from fuzz_soak import soak

SUBPACKAGES = (
    "steps",
    "hamming",
    "coreset",
    "collective",
    "diloco",
    "diloco.compressors",
    "optim",
    "schedule",
)

# Public names that are not callables with arguments to fuzz, each with the reason.
EXCLUDED = {
    # Type aliases (typing.Literal of option strings): nothing to call.
    "hamming.Method": "type alias",
    "schedule.BatchSizeTest": "type alias",
    # Exception classes, re-exported from thrifty.errors.
    "collective.AuthenticationError": "exception class",
    "collective.CollectiveAborted": "exception class",
    "collective.CollectiveError": "exception class",
    "collective.CollectiveTimeout": "exception class",
    "collective.PeerLost": "exception class",
    # A submodule: its own names are fuzzed as "diloco.compressors.*".
    "diloco.compressors": "submodule",
    # A typing.Protocol: what DiLoCo's transport argument must provide (fuzzed there).
    "diloco.Transport": "protocol",
}


def _base_seed() -> int:
    return int(os.environ.get("FUZZ_SEED", "0"))


def _describe(failures: list[typing.Any]) -> str:
    return "\n".join(
        f"{f.name} (replay: --replay {f.name} {f.base} {f.index}): {f.detail}" for f in failures[:5]
    )


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_survives_its_fuzz_cases(name: str) -> None:
    base = _base_seed()
    verdicts = [run_one(name, base, index) for index in range(REGISTRY[name].fast_calls)]
    failures = [v for v in verdicts if v.outcome == "failure"]
    assert not failures, _describe(failures)
    # A generator whose every case is refused would test nothing but the refusals.
    accepted = sum(v.outcome in ("ok", "passed-through") for v in verdicts)
    assert accepted > 0, f"{name}: no case of {len(verdicts)} was accepted"


def test_registry_covers_every_public_name() -> None:
    covered = {covered for entry in REGISTRY.values() for covered in entry.covers}
    missing = []
    for package in SUBPACKAGES:
        module = importlib.import_module(f"thrifty.{package}")
        for name in module.__all__:
            qualified = f"{package}.{name}"
            if qualified not in covered and qualified not in EXCLUDED:
                missing.append(qualified)
    assert not missing, f"public names without a fuzz entry: {missing}"
    assert len(fuzz_entries.MODULES) == 7


def test_exclusions_are_not_callables_to_fuzz() -> None:
    for qualified, reason in EXCLUDED.items():
        package, _, name = qualified.rpartition(".")
        value = getattr(importlib.import_module(f"thrifty.{package}"), name)
        if reason == "type alias":
            assert typing.get_origin(value) is typing.Literal, qualified
        elif reason == "exception class":
            assert inspect.isclass(value), qualified
            assert issubclass(value, Exception), qualified
        elif reason == "submodule":
            assert inspect.ismodule(value), qualified
        elif reason == "protocol":
            assert getattr(value, "_is_protocol", False), qualified
        else:
            assert is_dataclass(value), qualified


@pytest.mark.slow
def test_long_fuzz_run_finds_no_failure() -> None:
    calls = int(os.environ.get("FUZZ_CALLS", str(10**6)))
    tally = soak(calls, _base_seed() + 1, sorted(REGISTRY), log=print)
    print(tally.report())
    assert tally.calls == calls
    assert not tally.failures, _describe(tally.failures)
