"""thrifty.steps against what a user would write without it.

Each group holds thrifty beside its baselines (``benches/baselines.py``);
``benches/ratios.py`` prints the speed-ups. Under ``--benchmark-disable`` every benchmark
runs once and checks its answer against another implementation, so they double as tests.

Run as a script, ``python benches/bench_steps.py VARIANT STATE N`` computes one cost
matrix in this fresh process and prints its peak memory as JSON: the benchmarks start it
in a child process so that each measurement starts from a clean heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from baselines import naive_cost_matrix, numpy_optimal_path, python_optimal_path
from thrifty import steps
from thrifty.steps._cost import DEFAULT_MAX_MEMORY

Array = np.ndarray[Any, Any]

# --------------------------------------------------------------------------------------
# The DP: optimal_path
# --------------------------------------------------------------------------------------

PathSolver = Callable[[Array, int], Array]

PATH_SOLVERS: dict[str, tuple[str, PathSolver]] = {
    "thrifty": ("ours", lambda cost, k: steps.optimal_path(cost, k)),
    "thrifty strategy=full": ("ours", lambda cost, k: steps.optimal_path(cost, k, strategy="full")),
    "numpy DP": ("baseline", numpy_optimal_path),
    "python loop": ("baseline", python_optimal_path),
}

# The pure-Python loop is left out at N=2000, K=50: ~1e8 interpreted steps per call.
RANDOM_CASES = [
    (solver, n, k)
    for n, k in [(100, 10), (500, 10), (2000, 50)]
    for solver in ("thrifty", "numpy DP", "python loop")
    if not (solver == "python loop" and n >= 2000)
]
MONGE_CASES = [(solver, 2000, 50) for solver in ("thrifty", "thrifty strategy=full", "numpy DP")]


@functools.cache
def random_cost(n: int) -> Array:
    """Uniform costs on the strict upper triangle: ties have probability zero."""
    return np.triu(np.random.default_rng(n).random((n + 1, n + 1)), 1)


@functools.cache
def monge_cost(n: int) -> Array:
    """``(t_j - t_i)^2`` on random sorted times: Monge, since the cross difference is
    ``-2 (t_{i+1} - t_i)(t_{j+1} - t_j) < 0``."""
    t = np.sort(np.random.default_rng(n).random(n + 1))
    return np.triu(1e3 * (t[None, :] - t[:, None]) ** 2, 1)


@functools.cache
def path_by(solver: str, kind: str, n: int, k: int) -> tuple[int, ...]:
    cost = random_cost(n) if kind == "random" else monge_cost(n)
    return tuple(PATH_SOLVERS[solver][1](cost, k).tolist())


def check_path(nodes: Array, solver: str, kind: str, n: int, k: int) -> None:
    assert nodes.tolist()[0] == 0
    assert nodes.tolist()[-1] == n
    assert len(nodes) == k + 1
    assert (np.diff(nodes) > 0).all()
    # Every solver is held to another one: thrifty to the NumPy DP, the baselines to thrifty.
    reference = "numpy DP" if PATH_SOLVERS[solver][0] == "ours" else "thrifty"
    assert tuple(nodes.tolist()) == path_by(reference, kind, n, k)


def bench_path(benchmark: Any, solver: str, kind: str, n: int, k: int) -> None:
    role, function = PATH_SOLVERS[solver]
    cost = random_cost(n) if kind == "random" else monge_cost(n)
    benchmark.group = f"optimal_path {kind} N={n} K={k}"
    benchmark.extra_info.update(role=role, label=solver)
    nodes = benchmark(function, cost, k)
    check_path(nodes, solver, kind, n, k)


@pytest.mark.parametrize(("solver", "n", "k"), RANDOM_CASES)
def test_optimal_path_random(benchmark: Any, solver: str, n: int, k: int) -> None:
    bench_path(benchmark, solver, "random", n, k)


@pytest.mark.parametrize(("solver", "n", "k"), MONGE_CASES)
def test_optimal_path_monge(benchmark: Any, solver: str, n: int, k: int) -> None:
    assert steps.is_monge(monge_cost(n))
    bench_path(benchmark, solver, "monge", n, k)


# --------------------------------------------------------------------------------------
# The teacher cost matrix: cost_matrix
# --------------------------------------------------------------------------------------

SAMPLES = 512
STATES: dict[str, tuple[int, ...]] = {"2": (2,), "3x16x16": (3, 16, 16)}
SMALL_MEMORY = 16 * 2**20
# The naive code runs first in each group: thrifty's results are checked against it.
COST_VARIANTS: dict[str, str] = {
    "naive (all states)": "baseline",
    "thrifty max_memory=16MiB": "ours",
    "thrifty default max_memory": "ours",
}
COST_CASES = [
    (variant, state, n) for state in STATES for n in (50, 100, 200) for variant in COST_VARIANTS
]


class MLPVelocity(torch.nn.Module):
    """A flow-matching velocity ``v(x, t)``: an MLP on the flattened state and the time."""

    def __init__(self, shape: tuple[int, ...], hidden: int = 128) -> None:
        super().__init__()
        size = math.prod(shape)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(size + 1, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, size),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flat = torch.cat([x.reshape(x.shape[0], -1), t[:, None]], dim=1)
        return self.net(flat).reshape(x.shape)


@functools.cache
def velocity(state: str) -> MLPVelocity:
    torch.manual_seed(0)
    return MLPVelocity(STATES[state]).eval()


@functools.cache
def noise(state: str, samples: int = SAMPLES) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn((samples, *STATES[state]), generator=generator)


def compute_cost(variant: str, state: str, n: int, samples: int = SAMPLES) -> Array:
    grid = steps.time_grid(n)
    if variant == "naive (all states)":
        return naive_cost_matrix(velocity(state), grid, noise(state, samples))
    memory = SMALL_MEMORY if variant == "thrifty max_memory=16MiB" else None
    options: dict[str, Any] = {} if memory is None else {"max_memory": memory}
    return steps.cost_matrix(
        velocity(state), grid, noise(state, samples), progress=False, **options
    )


def held_bytes(variant: str, state: str, n: int) -> int:
    """The trajectory each variant holds at its peak: ``batch * (2n + 1) * state`` floats."""
    per_sample = (2 * n + 1) * math.prod(STATES[state]) * 4
    if variant == "naive (all states)":
        return SAMPLES * per_sample
    budget = SMALL_MEMORY if variant == "thrifty max_memory=16MiB" else DEFAULT_MAX_MEMORY
    return min(SAMPLES, max(1, budget // per_sample)) * per_sample


_COSTS: dict[tuple[str, str, int], Array] = {}


def cost_by(variant: str, state: str, n: int) -> Array:
    if (variant, state, n) not in _COSTS:
        _COSTS[variant, state, n] = compute_cost(variant, state, n)
    return _COSTS[variant, state, n]


def peak_memory(variant: str, state: str, n: int, samples: int = SAMPLES) -> int:
    """Peak resident bytes added by one cost matrix, measured in a fresh process."""
    command = [sys.executable, str(Path(__file__).resolve()), variant, state, str(n), str(samples)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"])


@pytest.mark.parametrize(("variant", "state", "n"), COST_CASES)
def test_cost_matrix(benchmark: Any, variant: str, state: str, n: int) -> None:
    benchmark.group = f"cost_matrix state={state} n={n}"
    benchmark.extra_info.update(
        role=COST_VARIANTS[variant], label=variant, held_bytes=held_bytes(variant, state, n)
    )
    costly = math.prod(STATES[state]) > 2
    cost = benchmark.pedantic(
        compute_cost, (variant, state, n), rounds=3 if costly else 10, warmup_rounds=1
    )
    _COSTS[variant, state, n] = cost
    ours = COST_VARIANTS[variant] == "ours"
    reference = "naive (all states)" if ours else "thrifty max_memory=16MiB"
    # float32 teacher states: thrifty sums the errors in float64, the naive code in float32.
    np.testing.assert_allclose(cost, cost_by(reference, state, n), rtol=1e-4, atol=1e-6)
    if benchmark.enabled:
        benchmark.extra_info["peak_bytes"] = peak_memory(variant, state, n)


def test_peak_memory_sees_what_the_naive_code_holds() -> None:
    """The child-process measurement works, and catches the naive code's full trajectory."""
    measured = peak_memory("naive (all states)", "3x16x16", 50)
    assert measured >= held_bytes("naive (all states)", "3x16x16", 50) // 2


# --------------------------------------------------------------------------------------
# The child process that measures peak memory
# --------------------------------------------------------------------------------------


def _resident_kib(field: str) -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    """Linux >= 4.0 resets VmHWM to the current RSS on writing 5 to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _release_free_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _max_rss_bytes() -> int:
    import resource  # POSIX only; imported here so that the module still loads elsewhere.

    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _measure_in_this_process(variant: str, state: str, n: int, samples: int) -> int:
    # A small run first, so that one-off set-up (thread pools, kernels) is not counted.
    compute_cost(variant, state, 4, samples=8)
    velocity(state)
    noise(state, samples)
    _release_free_memory()
    if _reset_peak():
        before = _resident_kib("VmRSS")
        compute_cost(variant, state, n, samples)
        after = _resident_kib("VmHWM")
        if before is not None and after is not None:
            return (after - before) * 1024
    before_bytes = _max_rss_bytes()
    compute_cost(variant, state, n, samples)
    return _max_rss_bytes() - before_bytes


if __name__ == "__main__":
    variant_, state_, n_, samples_ = sys.argv[1:5]
    peak = _measure_in_this_process(variant_, state_, int(n_), int(samples_))
    print(json.dumps({"peak_bytes": peak}))
