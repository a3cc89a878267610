"""Wall-clock seconds to a target loss in ``thrifty bench diloco``, shaped link included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thrifty import cli

pytest.importorskip("torch")

from benches import diloco_vs_ddp as bench
from benches.workloads import shaped_link
from benches.workloads.diloco_trainers import OUTER_LR
from thrifty.errors import ThriftyError


def test_time_to_target_is_the_first_point_at_or_below_it_without_interpolation() -> None:
    seconds = [0.0, 2.0, 4.0, 6.0, 8.0]
    losses = [3.4, 1.5, 0.9, 0.6, 0.7]
    # Crossed between 2 s and 4 s: credited with the point at 4 s, not a guess between.
    assert bench.time_to_target(seconds, losses, 1.0) == (4.0, 2)
    # Exactly at the target counts as reached.
    assert bench.time_to_target(seconds, losses, 0.9) == (4.0, 2)
    # The first point, not the lowest: the curve going up again later changes nothing.
    assert bench.time_to_target(seconds, losses, 0.7) == (6.0, 3)
    assert bench.time_to_target(seconds, losses, 3.4) == (0.0, 0)
    assert bench.time_to_target(seconds, losses, 0.59) is None
    assert bench.time_to_target([], [], 1.0) is None


def test_time_to_target_rejects_curves_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="seconds and losses must be as long, got 2 and 1"):
        bench.time_to_target([0.0, 1.0], [3.0], 1.0)


def _row(method: str, seconds: list[float], losses: list[float]) -> dict[str, Any]:
    steps = [25 * i for i in range(len(losses))]
    return {
        "method": method,
        "label": method,
        "eval_curve": list(zip(steps, losses, strict=True)),
        "eval_seconds": seconds,
        "eval_loss": losses[-1],
    }


def _result(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"methods": {row["method"]: row for row in rows}}


def test_apply_target_defaults_to_ddps_final_loss_and_divides_ddps_seconds() -> None:
    result = bench.apply_target(
        _result(
            _row("ddp", [0.0, 10.0, 20.0, 30.0], [3.4, 1.0, 0.8, 0.6]),
            _row("diloco", [0.0, 2.0, 4.0, 6.0], [3.4, 1.1, 0.6, 0.55]),
            _row("noloco", [0.0, 2.0, 4.0, 6.0], [3.4, 1.1, 0.9, 0.7]),
        )
    )
    assert result["target_loss"] == 0.6
    assert result["target_source"] == "DDP's final held-out loss"
    rows = result["methods"]
    assert (rows["ddp"]["seconds_to_target"], rows["ddp"]["step_at_target"]) == (30.0, 75)
    assert rows["ddp"]["speedup_vs_ddp"] == 1.0
    assert (rows["diloco"]["seconds_to_target"], rows["diloco"]["step_at_target"]) == (4.0, 50)
    assert rows["diloco"]["speedup_vs_ddp"] == 7.5
    assert rows["diloco"]["speedup_is_lower_bound"] is False
    assert rows["noloco"]["seconds_to_target"] is None
    assert rows["noloco"]["step_at_target"] is None
    assert rows["noloco"]["speedup_vs_ddp"] is None
    text = bench.format_table(
        {**result, "world": 4, "steps": 75, "entropy_floor": 0.5, "ddp_reference": "measured"}
        | {"methods": {n: _table_row(r) for n, r in rows.items()}}
    )
    assert "not reached" in text.splitlines()[-1]
    assert "7.50x" in text


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    return row | {
        "syncs": 3,
        "bytes_sent": 1000,
        "bytes_vs_ddp": 1.0,
        "peak_bytes_per_sync": 100,
        "wall_s": row["eval_seconds"][-1],
        "comm_wait_s": 0.1,
    }


def test_apply_target_given_that_ddp_misses_gives_a_lower_bound() -> None:
    result = bench.apply_target(
        _result(
            _row("ddp", [0.0, 10.0, 20.0], [3.4, 1.0, 0.8]),
            _row("diloco", [0.0, 2.0, 4.0], [3.4, 0.7, 0.6]),
        ),
        0.7,
    )
    assert (result["target_loss"], result["target_source"]) == (0.7, "given")
    rows = result["methods"]
    assert rows["ddp"]["seconds_to_target"] is None
    assert rows["ddp"]["speedup_vs_ddp"] is None
    # DDP's whole 20 s run did not get there; DiLoCo did in 2 s: at least 10x.
    assert rows["diloco"]["speedup_vs_ddp"] == 10.0
    assert rows["diloco"]["speedup_is_lower_bound"] is True


def test_apply_target_without_ddp_or_a_target_reports_none() -> None:
    result = bench.apply_target(_result(_row("diloco", [0.0, 2.0], [3.4, 0.7])))
    assert (result["target_loss"], result["target_source"]) == (None, None)
    assert result["methods"]["diloco"]["seconds_to_target"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--link-rate", "fast"], "link_rate must look like 100mbit, 1gbit or 512kbit"),
        (["--target-loss", "-1"], "target_loss must be a finite loss > 0"),
        (["--max-steps", "59"], "max_steps must be at least steps (60), got 59"),
        (["--steps", "80", "--max-steps", "60"], "max_steps must be at least steps (80)"),
        (["--max-steps", "0"], "max_steps must be an integer >= 1, got 0"),
        (["--outer-lr", "0"], "outer_lr must be a finite number > 0, got 0.0"),
        (["--outer-lr", "nan"], "outer_lr must be a finite number > 0"),
    ],
)
def test_bench_diloco_rejects_bad_link_and_target_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["bench", "diloco", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"max_steps": 299}, "max_steps"),
        ({"max_steps": 300.0}, "max_steps"),
        ({"max_steps": True}, "max_steps"),
        ({"outer_lr": -0.7}, "outer_lr"),
        ({"outer_lr": "1"}, "outer_lr"),
    ],
)
def test_budget_rejects_bad_values_naming_them(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ThriftyError, match=argument) as error:
        bench.budget(**{"max_steps": None, "steps": 300} | kwargs)
    assert isinstance(error.value, ValueError)
    assert getattr(error.value, "argument", None) == argument


def test_budget_defaults_to_ddps_steps_and_the_outer_lr() -> None:
    assert bench.budget(None, steps=300) == (300, OUTER_LR)
    assert bench.budget(450, steps=300, outer_lr=1) == (450, 1.0)


# A hang guard, not a timing: four spawned workers, two quick methods, a loaded machine.
@pytest.mark.timeout(400)
def test_bench_diloco_max_steps_runs_the_others_longer_than_ddp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "budget.png"
    argv = ["bench", "diloco", "--quick", "--methods", "ddp", "streaming-fp4", "diloco"]
    extra = ["--max-steps", "100", "--outer-lr", "1.0", "--json", "--plot", str(plot)]
    assert cli.main([*argv, *extra]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["steps"], result["max_steps"], result["outer_lr"]) == (60, 100, 1.0)
    rows = result["methods"]
    ddp = rows["ddp"]
    assert (ddp["steps"], ddp["syncs"], ddp["eval_curve"][-1][0]) == (60, 60, 60)
    assert ddp["outer_lr"] is None
    h = result["sync_every"]
    for name in ("streaming-fp4", "diloco"):
        row = rows[name]
        assert row["steps"] == 100
        assert row["outer_lr"] == 1.0
        assert "outer lr 1" in row["label"]
        # A point at every sync and one at the end of the longer budget.
        assert [s for s, _ in row["eval_curve"]] == [0, *range(h, 100, h), 100]
        assert len(row["eval_seconds"]) == len(row["eval_curve"])
    assert rows["diloco"]["syncs"] == 100 // h
    # The target is still DDP's final loss; the others' seconds to it come from their
    # longer curves.
    assert result["target_loss"] == ddp["eval_loss"]
    assert plot.stat().st_size > 1000
    assert "DDP 60 inner steps, the others 100" in bench.format_table(result)


def test_bench_diloco_link_rate_says_why_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shaped_link, "available", lambda: "needs root (CAP_NET_ADMIN)")
    assert cli.main(["bench", "diloco", "--quick", "--link-rate", "100mbit"]) == 2
    error = capsys.readouterr().err
    assert "link_rate 100mbit needs a rate-limited network namespace" in error
    assert "needs root (CAP_NET_ADMIN)" in error


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_diloco_on_a_shaped_link_reports_seconds_to_ddps_loss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reason = shaped_link.available()
    if reason is not None:
        pytest.skip(f"no shaped link here: {reason}")
    rate = 20_000_000
    argv = ["bench", "diloco", "--quick", "--methods", "ddp", "streaming-fp4"]
    assert cli.main([*argv, "--link-rate", "20mbit", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    link = result["link"]
    assert (link["rate"], link["rate_bps"]) == ("20mbit", rate)
    ddp, fp4 = result["methods"]["ddp"], result["methods"]["streaming-fp4"]
    assert result["target_source"] == "DDP's final held-out loss"
    assert result["target_loss"] == ddp["eval_loss"]
    # DDP reaches its own final loss, at the latest at its last point.
    assert ddp["seconds_to_target"] is not None
    assert 0 < ddp["seconds_to_target"] <= ddp["eval_seconds"][-1] <= ddp["wall_s"]
    assert ddp["speedup_vs_ddp"] == 1.0
    assert "seconds_to_target" in fp4
    for row in (ddp, fp4):
        assert len(row["eval_seconds"]) == len(row["eval_curve"])
        assert row["eval_seconds"] == sorted(row["eval_seconds"])
    # Every worker's bytes crossed the one filter: it cannot have passed them faster than
    # the rate allows, less what its bucket held at the start.
    world = result["world"]
    assert link["filter_bytes"] >= world * (ddp["bytes_sent"] + fp4["bytes_sent"])
    burst = shaped_link.default_burst(rate)
    assert ddp["wall_s"] >= (world * ddp["bytes_sent"] - burst) * 8 / rate
    # DDP sends far more and so waits on the link far longer.
    assert ddp["bytes_sent"] > 20 * fp4["bytes_sent"]
    assert ddp["comm_wait_s"] > fp4["comm_wait_s"]
