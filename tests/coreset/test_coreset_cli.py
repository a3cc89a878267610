"""``thrifty demo coreset``: the quick demo's numbers say what the demo claims."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from thrifty import cli

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from examples import coreset_demo as demo


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("coreset_demo")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["demo", "coreset", "--quick", "--json", "--out", str(out)]) == 0
    return out, json.loads(buffer.getvalue())["coreset"]


def test_demo_coreset_quick_json(quick_demo: tuple[Path, dict[str, Any]]) -> None:
    tmp_path, result = quick_demo
    reg = result["regression"]
    assert reg["sizes"] == sorted(reg["sizes"])
    for method in ("uniform", "leverage", "root_leverage", "lewis"):
        distortion = np.asarray(reg["distortion"][method])
        assert distortion.shape == (len(reg["sizes"]),)
        assert np.all(np.isfinite(distortion))
        assert np.all(distortion >= 0)
        # The coreset solution is never better than the full-data optimum (up to IRLS's tol).
        solved = [v for v in reg["excess_cost"][method] if v is not None]
        assert min(solved, default=0.0) > -1e-6
    # Lewis and root-leverage samples always hold the rows of the rare direction.
    for method in ("root_leverage", "lewis"):
        assert not any(reg["rank_deficient_samples"][method])
        assert None not in reg["excess_cost"][method]
    # On a coherent matrix, Lewis sampling distorts less than uniform sampling at every m.
    assert all(
        lewis < uniform
        for lewis, uniform in zip(
            reg["distortion"]["lewis"], reg["distortion"]["uniform"], strict=True
        )
    )
    rs2 = result["rs2"]
    assert rs2["epochs"] == 10
    # RS2 trains on a tenth of the samples per epoch.
    full_seen, rs2_seen = rs2["full"]["samples_seen"][-1], rs2["rs2"]["samples_seen"][-1]
    assert rs2_seen == pytest.approx(full_seen / 10, rel=0.01)
    assert max(rs2["full"]["accuracy"]) > 0.9
    assert Path(result["plot"]) == tmp_path / "coreset_demo.png"
    assert (tmp_path / "coreset_demo.png").stat().st_size > 1000


def test_demo_coreset_text_report(quick_demo: tuple[Path, dict[str, Any]]) -> None:
    out = demo.format_report(quick_demo[1])
    assert "distortion of ||[A b] z||_1" in out
    assert "seconds to target" in out
    assert f"plot: {quick_demo[0] / 'coreset_demo.png'}" in out
