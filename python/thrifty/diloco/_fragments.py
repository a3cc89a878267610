"""Which parameters sync together: Streaming DiLoCo's fragments (arXiv 2501.18512).

A model is cut into *units*, its top-level modules with containers (``nn.ModuleList``,
``nn.Sequential``, ``nn.ModuleDict``) opened up, so a transformer's units are its
embeddings, each block, the final norm and the head, in definition order. ``fragments=F``
deals the units out ``"strided"`` (unit ``i`` to fragment ``i % F``, the paper's better
choice) or ``"sequential"`` (contiguous runs of about equal parameter count). Explicit
fragments are lists of module names. The result depends only on the model, never on
ranks or world size, so every peer, a newcomer included, derives the same fragments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty._checks import check_choice
from thrifty._extras import require
from thrifty.errors import InvalidArgumentError

PATTERNS = ("strided", "sequential")


@dataclass(frozen=True)
class Fragment:
    """One fragment: its index, the module names it was built from, its parameters."""

    index: int
    modules: tuple[str, ...]
    names: tuple[str, ...]
    params: tuple[Any, ...]

    @property
    def numel(self) -> int:
        return sum(int(p.numel()) for p in self.params)


def _units(model: Any) -> list[tuple[str, list[tuple[str, Any]]]]:
    """(module name, its named parameters) in definition order, containers opened."""
    nn = require("torch.nn")
    containers = (nn.ModuleList, nn.Sequential, nn.ModuleDict)
    units: list[tuple[str, list[tuple[str, Any]]]] = []
    named = dict(model.named_parameters())  # tied parameters appear once, first name wins
    taken: set[str] = set()

    def claim(prefix: str) -> list[tuple[str, Any]]:
        found = [
            (name, p)
            for name, p in named.items()
            if name not in taken and (name == prefix or name.startswith(prefix + "."))
        ]
        taken.update(name for name, _ in found)
        return found

    def visit(prefix: str, module: Any) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, containers):
                visit(name, child)
            else:
                params = claim(name)
                if params:
                    units.append((name, params))

    visit("", model)
    # Parameters held directly by the root module or by a container come last, one each.
    for name, p in named.items():
        if name not in taken:
            units.append((name, [(name, p)]))
    return units


def plan_fragments(model: Any, fragments: Any, pattern: str) -> list[Fragment]:
    """The fragments of ``model``, by count and ``pattern`` or by explicit module names."""
    check_choice(pattern, "fragment_pattern", PATTERNS)
    units = _units(model)
    if not units:
        raise InvalidArgumentError("model has no parameters to train", "model")
    if isinstance(fragments, (bool, np.bool_)) or not isinstance(
        fragments, (int, np.integer, Sequence)
    ):
        raise InvalidArgumentError(
            f"fragments must be an int or lists of module names, got {type(fragments).__name__}",
            "fragments",
        )
    if isinstance(fragments, (int, np.integer)):
        return _by_count(units, int(fragments), pattern)
    return _by_names(units, fragments)


def _make(index: int, chosen: list[tuple[str, list[tuple[str, Any]]]]) -> Fragment:
    pairs = [pair for _, params in chosen for pair in params]
    return Fragment(
        index=index,
        modules=tuple(name for name, _ in chosen),
        names=tuple(name for name, _ in pairs),
        params=tuple(p for _, p in pairs),
    )


def _by_count(
    units: list[tuple[str, list[tuple[str, Any]]]], count: int, pattern: str
) -> list[Fragment]:
    if not 1 <= count <= len(units):
        raise InvalidArgumentError(
            f"fragments must be in 1..={len(units)} (the model's units: "
            f"{', '.join(name for name, _ in units)}), got {count}",
            "fragments",
        )
    if pattern == "strided":
        return [_make(f, units[f::count]) for f in range(count)]
    sizes = [sum(int(p.numel()) for _, p in params) for _, params in units]
    total = sum(sizes)
    out: list[Fragment] = []
    start = 0
    running = 0
    for f in range(count):
        end = start + 1  # every fragment gets at least one unit
        running += sizes[start]
        # Leave enough units for the fragments still to come.
        while (
            end < len(units) - (count - f - 1)
            and running + sizes[end] / 2 <= total * (f + 1) / count
        ):
            running += sizes[end]
            end += 1
        if f == count - 1:
            running += sum(sizes[end:])
            end = len(units)
        out.append(_make(f, units[start:end]))
        start = end
    return out


def _by_names(
    units: list[tuple[str, list[tuple[str, Any]]]], fragments: Sequence[Any]
) -> list[Fragment]:
    everything = [pair for _, params in units for pair in params]
    owner: dict[str, int] = {}
    out: list[Fragment] = []
    for f, names in enumerate(fragments):
        if isinstance(names, str) or not isinstance(names, Sequence) or not names:
            raise InvalidArgumentError(
                f"fragments[{f}] must be a non-empty list of module names, got {names!r}",
                "fragments",
            )
        chosen: list[tuple[str, Any]] = []
        for module in names:
            matched = [(n, p) for n, p in everything if n == module or n.startswith(f"{module}.")]
            if not matched:
                raise InvalidArgumentError(
                    f"fragments[{f}] names {module!r}, which holds no parameter of the model",
                    "fragments",
                )
            for n, p in matched:
                if n in owner:
                    raise InvalidArgumentError(
                        f"parameter {n!r} is in fragments {owner[n]} and {f}", "fragments"
                    )
                owner[n] = f
                chosen.append((n, p))
        out.append(
            Fragment(
                index=f,
                modules=tuple(str(m) for m in names),
                names=tuple(n for n, _ in chosen),
                params=tuple(p for _, p in chosen),
            )
        )
    missing = [n for n, _ in everything if n not in owner]
    if missing:
        raise InvalidArgumentError(
            f"every parameter must be in a fragment; missing: {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
            "fragments",
        )
    return out
