"""Figures are an extra: a demo saves its figure when matplotlib is installed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from thrifty.errors import MissingExtraError


def save_figure(draw: Callable[[str], None], path: Path) -> str | None:
    """Run ``draw(str(path))``, which builds and saves a figure there, and return the path.

    The folder is created first. Without matplotlib the result is ``None``: the numbers a
    demo prints stand without the picture.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        draw(str(path))
    except MissingExtraError:
        return None
    return str(path)
