"""The chaos harness: random SIGKILLs while the others loop over all-reduces."""

from __future__ import annotations

import chaos
import pytest


@pytest.mark.timeout(180)
@pytest.mark.parametrize("shared_memory", [False, True], ids=["tcp", "shm"])
def test_short_chaos_run_sees_no_wrong_result_no_lost_buffer_and_no_hang(
    shared_memory: bool,
) -> None:
    report = chaos.run(duration_s=25, peers=4, seed=1, progress=False, shared_memory=shared_memory)
    assert report.violations == []
    assert report.kills >= 5
    assert report.completed > 50
    # Kills land inside collectives too: some calls must have failed and been restored.
    assert report.failed_and_restored > 0


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_long_chaos_soak() -> None:
    report = chaos.run(duration_s=900, peers=5, seed=7, progress=False)
    assert report.violations == []
    assert report.completed > 1000
