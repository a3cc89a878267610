"""Figures are an extra: a demo saves its figure when matplotlib is installed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from thrifty._extras import require
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


@contextlib.contextmanager
def figure(
    path: str | Path, rows: int = 1, columns: int = 1, *, size: tuple[float, float], dpi: int = 120
) -> Iterator[Any]:
    """The axes of a new figure (as ``Figure.subplots`` gives them), saved to ``path`` at the end.

    Built on ``matplotlib.figure.Figure``, not pyplot: no global figure is left open and
    the backend of the caller's session is not touched. Raises
    :class:`~thrifty.errors.MissingExtraError` without matplotlib.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from thrifty._plot import figure
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "line.png"
    >>> with figure(out, size=(3, 2)) as ax:
    ...     _ = ax.plot([0, 1], [1, 0])
    >>> out.stat().st_size > 0
    True
    """
    fig = require("matplotlib.figure").Figure(figsize=size)
    yield fig.subplots(rows, columns)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
