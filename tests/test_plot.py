"""Demos save a figure when matplotlib is there, and carry on without it when it is not."""

from __future__ import annotations

from pathlib import Path

from thrifty._plot import save_figure
from thrifty.errors import MissingExtraError


def test_save_figure_creates_the_folder_and_returns_the_path(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "figure.png"
    assert save_figure(lambda path: Path(path).write_bytes(b"png"), target) == str(target)
    assert target.read_bytes() == b"png"


def test_save_figure_without_matplotlib_returns_none(tmp_path: Path) -> None:
    def draw(path: str) -> None:
        raise MissingExtraError("matplotlib is needed for this")

    assert save_figure(draw, tmp_path / "figure.png") is None
    assert not (tmp_path / "figure.png").exists()
