"""Drop-Muon against Muon: wall time to Muon's final accuracy, a small CNN on digits.

The workload is :mod:`thrifty.optim.workload` (shared with ``thrifty demo schedule``):
the same CNN, epochs, batches and seeds for :class:`thrifty.optim.Muon` plus AdamW and for
:class:`thrifty.optim.DropMuon` (arXiv 2510.02239), which is exactly the baseline with
``s = 0`` at every step (``tests/optim/test_drop_muon.py`` checks that). The figure of
merit, in ``extra_info``, is ``seconds_to_target``: the training time until the test
accuracy first reaches the baseline's final one, the mean of its last ``FINAL_EVALS``
evaluations (``speedup`` = Muon's over Drop-Muon's; the paper reports up to 1.4x).

Under ``--benchmark-disable`` (``make test``) each method trains 30 steps and the
test checks that it learned (accuracy well above chance). Run as a script,
``python benches/bench_optim.py [SEEDS]`` prints the comparison over several seeds.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from thrifty._extras import available  # noqa: E402
from thrifty.optim import workload  # noqa: E402
from thrifty.optim.workload import EPOCHS, Run  # noqa: E402

THREADS = 2  # the cores of the machine the README's numbers come from

_runs: dict[str, Run] = {}


@pytest.mark.parametrize("method", workload.METHODS)
def test_drop_muon_vs_muon(benchmark: Any, method: str, request: pytest.FixtureRequest) -> None:
    if not available("sklearn.datasets"):
        pytest.skip("scikit-learn (thrifty[datasets]) is needed for the digits")
    torch.set_num_threads(THREADS)
    untimed = request.config.getoption("benchmark_disable")
    epochs, limit = (2, 480) if untimed else (EPOCHS, None)
    benchmark.group = f"drop-muon vs muon, digits CNN, {epochs} epochs"
    runs: list[Run] = []
    benchmark.pedantic(
        lambda: runs.append(workload.train(method, seed=0, epochs=epochs, limit=limit)),
        rounds=1,
        iterations=1,
    )
    run = runs[-1]
    _runs[method] = run
    # 10 classes: chance is 0.1; after 30 steps both are well above it (measured 0.39-0.6).
    assert run.final_accuracy > 0.25
    if method == "drop-muon":
        assert set(run.starts) == set(range(5))
    info: dict[str, Any] = {
        "role": "baseline" if method == "muon" else "ours",
        "label": run.label,
        "final_accuracy": run.final_accuracy,
        "train_seconds": run.total_seconds,
    }
    baseline = _runs.get("muon")
    if method == "drop-muon" and baseline is not None:
        target = baseline.final_accuracy
        ours_s, theirs_s = run.seconds_to(target), baseline.seconds_to(target)
        info.update(target_accuracy=target, seconds_to_target=ours_s)
        if ours_s is not None and theirs_s is not None:
            info["speedup"] = theirs_s / ours_s
    benchmark.extra_info.update(info)


if __name__ == "__main__":
    torch.set_num_threads(THREADS)
    seeds = range(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    for seed in seeds:
        print(workload.compare(seed), flush=True)
