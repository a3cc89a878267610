from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from thrifty import cli


def test_grid_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["steps", "grid", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["times"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert out["sigmas"][-1] == 0.0


def test_path_json_and_clear_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    i, j = np.indices((5, 5))
    np.save(tmp_path / "c.npy", np.triu((j - i).astype(float) ** 2, 1))
    assert cli.main(["steps", "path", str(tmp_path / "c.npy"), "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"nodes": [0, 2, 4], "cost": 8.0}
    assert cli.main(["steps", "path", str(tmp_path / "c.npy"), "9"]) == 2
    assert "k: must be in 1..=N" in capsys.readouterr().err


def test_demo_quick_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    assert cli.main(["demo", "steps", "--quick", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)["steps"]
    assert list(result["table"]) == ["K=2", "K=4"]
    for key, row in result["table"].items():
        assert row["auto"] > 0
        # auto is the candidate closest to the teacher on held-out noise, uniform among them.
        distances = result["teacher_distances"][key]
        assert distances["auto"] <= distances["uniform"]
    assert (tmp_path / "steps_demo.png").stat().st_size > 1000


def test_demo_without_a_checkout_exits_2_saying_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As from a wheel: the package in site-packages, run from a folder outside any checkout.
    monkeypatch.setattr(cli, "_PACKAGE", tmp_path / "site-packages" / "thrifty")
    monkeypatch.delenv("THRIFTY_EXAMPLES", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "steps", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "clone the repository" in err
    assert "make demo" in err
    assert cli.main(["demo", "--examples", str(tmp_path)]) == 2
    assert f"no steps_demo.py in {tmp_path}" in capsys.readouterr().err


def test_demo_finds_the_examples_of_the_checkout_it_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(cli, "_PACKAGE", tmp_path / "site-packages" / "thrifty")
    monkeypatch.delenv("THRIFTY_EXAMPLES", raising=False)
    monkeypatch.chdir(checkout / "tests" / "collective")
    found = cli._source_folder("examples", "steps_demo", None, "THRIFTY_EXAMPLES")
    assert found == checkout / "examples"
    monkeypatch.chdir(tmp_path)
    assert cli._source_folder("examples", "steps_demo", None, "THRIFTY_EXAMPLES") is None
    monkeypatch.setenv("THRIFTY_EXAMPLES", str(checkout / "examples"))
    assert cli._source_folder("examples", "steps_demo", None, "THRIFTY_EXAMPLES") == (
        checkout / "examples"
    )
