"""``thrifty demo hamming``: the quick demo finds what was planted; bad arguments exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples import hamming_demo as demo
from thrifty import cli


@pytest.mark.timeout(120)
def test_demo_hamming_quick_json_finds_the_planted_duplicates_and_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "hamming", "--quick", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)["hamming"]
    dup = result["duplicates"]
    assert dup["passages"] == 2000
    assert dup["planted_groups"] == 100
    # Every planted group is recovered, and nothing else is linked.
    assert dup["recall"] == 1.0
    assert dup["groups_recovered"] == dup["planted_groups"]
    assert dup["pair_precision"] == 1.0
    assert sorted(map(sorted, dup["found"])) == sorted(map(sorted, dup["planted"]))
    assert max(dup["planted_distances"]) <= dup["radius"] < min(dup["random_distances"])
    genome = result["genome"]
    assert genome["genome_length"] == 10**6
    assert genome["found_positions"] == genome["planted_positions"]
    assert genome["found_distances"] == genome["planted_mismatches"]
    assert max(genome["found_distances"]) == genome["k"]
    assert genome["min_distance_elsewhere"] > genome["k"]
    assert sum(genome["distance_counts"]) == genome["genome_length"] - genome["read_length"] + 1
    assert Path(result["plot"]) == tmp_path / "hamming_demo.png"
    assert (tmp_path / "hamming_demo.png").stat().st_size > 1000
    report = demo.format_report(result)
    assert "recall 1.000" in report
    assert str(genome["planted_positions"]) in report


def test_corpus_is_seeded_and_plants_disjoint_groups() -> None:
    texts, planted = demo.corpus(300, 20, seed=5)
    again, planted_again = demo.corpus(300, 20, seed=5)
    assert texts == again
    assert planted == planted_again
    assert len(texts) == 300
    members = [i for group in planted for i in group]
    assert len(members) == len(set(members))
    assert all(2 <= len(group) <= 3 for group in planted)
    # A copy differs from its original by a few word edits, never by nothing at all.
    for group in planted:
        words = [texts[i].split() for i in group]
        assert all(w != words[0] for w in words[1:])


def test_demo_rejects_an_unknown_core(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "hammming"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument core" in error
    assert "'hammming'" in error


def test_demo_hamming_rejects_an_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "hamming", "--k", "3"])
    assert exit_info.value.code == 2
    assert "--k" in capsys.readouterr().err


def test_demo_hamming_rejects_an_out_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "taken"
    file.write_text("")
    assert cli.main(["demo", "hamming", "--quick", "--json", "--out", str(file)]) == 2
    error = capsys.readouterr().err
    assert "out_dir (--out) must be a folder" in error
    assert str(file) in error
