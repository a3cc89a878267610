"""``thrifty bench diloco`` and ``thrifty demo diloco``: real local workers, quick settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty import cli

pytest.importorskip("torch")

from benches import diloco_vs_ddp as bench
from benches.workloads.diloco_language_model import WorkloadConfig
from examples import diloco_demo as demo


# A hang guard, not a timing: four spawned workers run six methods, which takes minutes on a
# loaded two-core machine.
@pytest.mark.timeout(400)
def test_bench_diloco_quick_json_compares_every_method_with_ddp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "diloco.png"
    assert cli.main(["bench", "diloco", "--quick", "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["world"] == 4
    assert result["steps"] == bench.QUICK_STEPS
    assert result["ddp_reference"] == "measured"
    rows = result["methods"]
    assert list(rows) == list(bench.METHODS)
    for row in rows.values():
        for key in ("bytes_sent", "peak_bytes_per_sync", "bytes_vs_ddp", "wall_s", "eval_loss"):
            assert row[key] is not None, (row["method"], key)
        assert row["workers_finished"] == 4
        assert row["eval_curve"][0][0] == 0
        assert row["eval_curve"][-1][0] == result["steps"]
    ddp, diloco = rows["ddp"], rows["diloco"]
    h = result["sync_every"]
    # DDP all-reduces the model every step, DiLoCo every H steps: 1/H of the bytes.
    assert ddp["syncs"] == result["steps"]
    assert ddp["bytes_vs_ddp"] == 1.0
    assert diloco["syncs"] == result["steps"] // h
    assert diloco["bytes_vs_ddp"] == pytest.approx(1 / h, rel=0.05)
    # Fragments shrink the largest sync, not the total; fp4 shrinks the total.
    fp32, fp4 = rows["streaming-fp32"], rows["streaming-fp4"]
    assert fp32["peak_bytes_per_sync"] < 0.6 * diloco["peak_bytes_per_sync"]
    assert fp32["bytes_sent"] == pytest.approx(diloco["bytes_sent"], rel=0.05)
    assert fp4["bytes_sent"] < fp32["bytes_sent"] / 5
    assert rows["spsa"]["bytes_sent"] == 24 * result["steps"]
    # The default corpus is the text: every method that trains with gradients learns more
    # than the bytes' frequencies within the quick run.
    assert result["corpus"] == "pydoc"
    assert result["entropy_floor"] is None
    unigram = result["references"]["unigram"]
    assert result["references"]["bigram"] < unigram < 0.7 * result["initial_loss"]
    for name in ("ddp", "diloco", "streaming-fp32", "streaming-fp4", "noloco"):
        assert rows[name]["eval_loss"] < unigram, name
    assert plot.stat().st_size > 1000
    text = bench.format_table(result)
    for row in rows.values():
        assert row["label"] in text
    assert "bits/byte" in text


@pytest.mark.timeout(180)
def test_demo_diloco_quick_json_survives_the_kill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "diloco", "--quick", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)["diloco"]
    steps = result["bench"]["steps"]
    killed = result["killed"]
    assert killed["rank"] == demo.VICTIM
    # It died inside the sync of the step after the last one it finished.
    assert killed["steps_finished"] == killed["died_in_sync_at_step"] - 1
    workers = result["workers"]
    survivors = [w for w in workers if w["finished"]]
    assert len(workers) == 4
    assert len(survivors) == 3
    for worker in survivors:
        assert worker["steps"] == steps
        assert worker["world_sizes"][0][1] == 4
        assert worker["world_sizes"][-1][1] == 3
        assert worker["retries"] >= 1
        assert worker["last_loss"] < worker["first_loss"]
    rows = result["bench"]["methods"]
    assert set(rows) == {"ddp", "diloco"}
    assert rows["diloco"]["workers_finished"] == 3
    assert rows["diloco"]["eval_loss"] < 0.5 * result["bench"]["initial_loss"]
    assert rows["diloco"]["bytes_vs_ddp"] < 0.1
    assert Path(result["plot"]) == tmp_path / "diloco_demo.png"
    assert (tmp_path / "diloco_demo.png").stat().st_size > 1000
    assert "SIGKILLed" in demo.format_report(result)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--world", "1"], "world must be an integer >= 2, got 1"),
        (["--steps", "5"], "steps must be at least sync_every (25)"),
        (["--steps", "0"], "steps must be an integer >= 1, got 0"),
        (["--sync-every", "3"], "sync_every must be an integer >= 6, got 3"),
        (["--corpus", "markov", "--steps", "5"], "steps must be at least sync_every (25)"),
    ],
)
def test_bench_diloco_rejects_bad_arguments_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["bench", "diloco", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bench_diloco_rejects_an_unknown_method(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "diloco", "--methods", "ddp", "adam"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--methods" in error
    assert "'adam'" in error


def test_bench_diloco_rejects_an_unknown_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "diloco", "--corpus", "wiki"])
    assert exit_info.value.code == 2
    assert "argument --corpus: invalid choice: 'wiki'" in capsys.readouterr().err


def test_bench_settings_pick_the_corpus() -> None:
    text, steps, sync_every, _ = bench.settings(steps=None, sync_every=None, quick=False)
    assert (text.corpus, text.vocab, steps, sync_every) == ("pydoc", 256, 300, bench.SYNC_EVERY)
    quick = bench.settings(steps=None, sync_every=None, quick=True)[0]
    assert quick.corpus == "pydoc"
    assert quick.d_model < text.d_model
    markov = bench.settings(steps=None, sync_every=None, quick=True, corpus="markov")[0]
    assert markov == WorkloadConfig()
    with pytest.raises(ValueError, match="corpus must be one of"):
        bench.settings(steps=None, sync_every=None, quick=True, corpus="wiki")


def test_bench_run_rejects_bad_methods() -> None:
    with pytest.raises(ValueError, match="methods must be among") as error:
        bench.run(["ddp", "sgd"])
    assert getattr(error.value, "argument", None) == "methods"
    with pytest.raises(ValueError, match="methods must be a non-empty list"):
        bench.run("ddp")
