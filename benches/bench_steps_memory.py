"""Peak memory and time of ``steps.schedule()`` beside the version that held every sample's
teacher trajectory (``before``: ``python/thrifty/steps/_schedule.py`` at commit
``BEFORE``, read from git).

The velocity is a small seeded torch convolution on the CPU in float32 (a depthwise 3x3
convolution, tanh, and a 1x1 channel mix), called on NumPy states. Each run is
``schedule(velocity, K, n=100, samples=S, shape=state, refine_budget=4)``: every
candidate (uniform, EDM, Bellman, student DP, each refined) and the validation.

Every measurement runs in a fresh child process,
``python benches/bench_steps_memory.py VARIANT STATE SAMPLES``, which prints one JSON line:
it builds the model, runs a tiny schedule (so imports and thread pools are not counted),
resets the kernel's high-water mark, and reports ``VmHWM`` after the run minus ``VmRSS``
before it (``ru_maxrss`` where ``/proc`` is missing), the run's wall time and its answer.
Run with no arguments, the script prints the whole table in Markdown.

An untimed test runs the 2-D state in this process: both versions must give the same
schedule to the bit. The measured runs take minutes and run only when benchmarking.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from thrifty import steps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The last commit whose schedule() held the whole teacher trajectory.
BEFORE = "bce737d"
N = 100
K = 4
REFINE_BUDGET = 4
STATES: dict[str, tuple[int, ...]] = {"2": (2,), "4x32x32": (4, 32, 32), "16x64x64": (16, 64, 64)}
SAMPLES = (64, 256)
VARIANTS = {"schedule (batched)": "ours", "before (all samples)": "baseline"}
CASES = [
    (variant, state, samples) for state in STATES for samples in SAMPLES for variant in VARIANTS
]


class ConvVelocity(torch.nn.Module):  # type: ignore[misc]
    """``v(x, t)`` for a state ``(C, H, W)`` (a 2-D point is one 1 x 2 image)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.image = shape if len(shape) == 3 else (1, 1, math.prod(shape))
        channels = self.image[0]
        self.depthwise = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pointwise = torch.nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = x.reshape(x.shape[0], *self.image)
        h = self.pointwise(torch.tanh(self.depthwise(y) + t[:, None, None, None]))
        return (h - y).reshape(x.shape)


@functools.cache
def velocity(state: str) -> Any:
    torch.manual_seed(0)
    model = ConvVelocity(STATES[state]).eval()

    def v(x: np.ndarray[Any, Any], t: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            return model(torch.from_numpy(x), torch.from_numpy(t)).numpy()  # type: ignore[no-any-return]

    return v


@functools.cache
def before() -> ModuleType:
    """``schedule`` as it was at ``BEFORE``, imported from a temporary file."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:python/thrifty/steps/_schedule.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "schedule_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("schedule_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["schedule_before"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(variant: str, state: str, samples: int, **options: Any) -> steps.Schedule:
    function = steps.schedule if VARIANTS[variant] == "ours" else before().schedule
    arguments: dict[str, Any] = {"n": N, "refine_budget": REFINE_BUDGET, **options}
    result: steps.Schedule = function(
        velocity(state), K, samples=samples, shape=STATES[state], progress=False, **arguments
    )
    return result


def held_before(state: str, samples: int) -> int:
    """Bytes the version before holds at its peak: the teacher's states and velocities and
    the student's states, velocities and next states, ``(5n + 2) * samples`` states."""
    return (5 * N + 2) * samples * math.prod(STATES[state]) * 4


def _available_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def feasible(variant: str, state: str, samples: int) -> bool:
    """The version before is only run where what it holds fits in 70% of free memory."""
    available = _available_bytes()
    if VARIANTS[variant] == "ours" or available is None:
        return True
    return held_before(state, samples) < 0.7 * available


def measure(variant: str, state: str, samples: int) -> dict[str, Any]:
    """One run in a fresh child process."""
    command = [sys.executable, str(Path(__file__).resolve()), variant, state, str(samples)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def one_thread() -> Any:
    """A tiny model: more threads only add contention (tens of times slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_same_schedule_on_the_2d_state() -> None:
    """Both versions agree to the bit, with one batch and with batches of 16 samples."""
    reference = run("before (all samples)", "2", 64)
    for options in ({}, {"max_memory": 16 * (4 * N + 1) * 2 * 4}):
        ours = run("schedule (batched)", "2", 64, **options)
        assert ours.method == reference.method
        np.testing.assert_array_equal(ours.times, reference.times)
        assert ours.cost == reference.cost
        assert ours.report == reference.report


@pytest.mark.parametrize(("variant", "state", "samples"), CASES)
def test_schedule_memory(benchmark: Any, variant: str, state: str, samples: int) -> None:
    if benchmark.disabled:
        pytest.skip("minutes of CPU time: runs only when benchmarking")
    if not feasible(variant, state, samples):
        pytest.skip(f"holds {held_before(state, samples) / 2**30:.1f} GiB: more than is free")
    benchmark.group = f"schedule state={state} n={N} samples={samples}"
    result = benchmark.pedantic(measure, (variant, state, samples), rounds=1, iterations=1)
    benchmark.extra_info.update(role=VARIANTS[variant], label=variant, **result)
    if VARIANTS[variant] == "baseline":
        benchmark.extra_info["held_bytes"] = held_before(state, samples)


# --------------------------------------------------------------------------------------
# The child process
# --------------------------------------------------------------------------------------


def _resident_kib(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
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


def _max_rss_bytes() -> int:
    import resource  # POSIX only; imported here so that the module still loads elsewhere.

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _measure_in_this_process(variant: str, state: str, samples: int) -> dict[str, Any]:
    torch.set_num_threads(1)  # a small model on a shared machine: fewer, steadier numbers
    velocity(state)
    # A tiny run first, through the batched paths too, so set-up is not counted.
    warm = {"max_memory": 1} if VARIANTS[variant] == "ours" else {}
    run(variant, state, 2, n=4, refine_budget=1, **warm)
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    reset = _reset_peak()
    before_kib = _resident_kib("VmRSS") if reset else None
    before_max = _max_rss_bytes()
    start = time.perf_counter()
    chosen = run(variant, state, samples)
    seconds = time.perf_counter() - start
    after_kib = _resident_kib("VmHWM")
    if before_kib is not None and after_kib is not None:
        peak = (after_kib - before_kib) * 1024
    else:
        peak = _max_rss_bytes() - before_max
    return {
        "peak_bytes": peak,
        "seconds": seconds,
        "method": chosen.method,
        "times": chosen.times.tolist(),
        "validation_error": chosen.validation_error,
    }


def _table() -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    print(f"CPU: {cpu}; n={N}, K={K}, refine_budget={REFINE_BUDGET}, torch threads 1\n")
    print("| state | samples | before: peak MiB | before: s | batched: peak MiB | batched: s "
          "| time ratio | same schedule |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for state in STATES:
        for samples in SAMPLES:
            ours = measure("schedule (batched)", state, samples)
            if feasible("before (all samples)", state, samples):
                old = measure("before (all samples)", state, samples)
                same = old["times"] == ours["times"] and old["method"] == ours["method"]
                columns = [
                    f"{old['peak_bytes'] / 2**20:.0f}",
                    f"{old['seconds']:.1f}",
                    f"{ours['peak_bytes'] / 2**20:.0f}",
                    f"{ours['seconds']:.1f}",
                    f"{ours['seconds'] / old['seconds']:.2f}x",
                    "yes" if same else "no",
                ]
            else:
                held = held_before(state, samples) / 2**30
                columns = [
                    f"not run (holds {held:.1f} GiB)",
                    "",
                    f"{ours['peak_bytes'] / 2**20:.0f}",
                    f"{ours['seconds']:.1f}",
                    "",
                    "",
                ]
            print(f"| {state} | {samples} | " + " | ".join(columns) + " |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 1:
        _table()
    else:
        variant_, state_, samples_ = sys.argv[1:4]
        print(json.dumps(_measure_in_this_process(variant_, state_, int(samples_))))
