"""The CUDA paths against their CPU twins and against what a PyTorch user writes on the GPU.

Runs only where CuPy sees a CUDA device (skipped otherwise, also under ``make test``).

- Hamming ``cdist`` (1024 queries x 200 000 codes of 256 bits) and ``topk`` (k = 10 over
  10^6 codes): ``cuda/hamming.cu`` against thrifty's SIMD CPU kernel and against a
  tensor-core matmul of the codes unpacked to +-1 bfloat16 (exact at 256 bits), with
  ``torch.topk`` over chunks for the top-k. The top-k's "thrifty cuda" is the query-tiled
  kernel that ``hamming.topk`` dispatches to; the one-block-per-query kernel it replaced
  there is timed beside it.
- Leverage scores (n = 10^6, d = 50, float64): cuSOLVER QR plus the row-norm kernel
  against the Rust TSQR and against ``torch.linalg.qr`` on the GPU. Lewis weights (p = 1)
  on the GPU against the Rust path.
- BOSS cost matrix (64-node EDM grid, 2048 noise images of 3 x 32 x 32): the CUDA
  jump-error kernel against the CPU reduction, same analytic velocity.
- Muon step over 24 matrices of 1024 x 1024 (float32 weights): thrifty's batched
  Newton-Schulz against ``torch.optim.Muon`` (per parameter) and the reference code's loop.

Every timed call ends with a device synchronise, so the times are the GPU's work.
Each case also checks that the fast path and its yardstick agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from baselines import (
    per_parameter_muon_step,
    torch_leverage_scores,
    torch_matmul_cdist,
    torch_matmul_topk,
)
from thrifty import _cuda, coreset, hamming, optim, steps
from thrifty.hamming._gpu import topk_gpu

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _cuda.device_available(), reason="needs a CUDA device"),
]

ROUNDS = 10


def _sync() -> None:
    torch.cuda.synchronize()


def _run(
    benchmark: Any,
    group: str,
    label: str,
    role: str,
    fn: Callable[[], Any],
    *,
    heavy: bool = False,
) -> Any:
    """Time ``fn`` to the end of its GPU work; ``heavy`` CPU baselines get fewer rounds."""
    benchmark.group = group
    benchmark.extra_info.update(label=label, role=role)

    def synced() -> Any:
        out = fn()
        _sync()
        return out

    rounds, warmup = (3, 1) if heavy else (ROUNDS, 2)
    return benchmark.pedantic(synced, rounds=rounds, warmup_rounds=warmup, iterations=1)


@functools.cache
def codes(seed: int, n: int, width: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).integers(0, 256, (n, width), dtype=np.uint8)


CDIST = ["thrifty cuda", "thrifty cpu", "torch matmul bf16"]


def _codes_on(solver: str, *arrays: np.ndarray[Any, Any]) -> list[Any]:
    """The arrays where ``solver`` works: host NumPy for the CPU kernel, else CUDA tensors."""
    if solver == "thrifty cpu":
        return list(arrays)
    return [torch.from_numpy(x).cuda() for x in arrays]


def _host(x: Any) -> np.ndarray[Any, Any]:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.mark.parametrize("solver", CDIST)
def test_hamming_cdist(benchmark: Any, solver: str) -> None:
    q, db = codes(0, 1024, 32), codes(1, 200_000, 32)
    dq, ddb = _codes_on(solver, q, db)
    fn = torch_matmul_cdist if solver == "torch matmul bf16" else hamming.cdist
    role = "ours" if solver == "thrifty cuda" else "baseline"
    heavy = solver == "thrifty cpu"
    got = _run(benchmark, "gpu hamming cdist", solver, role, lambda: fn(dq, ddb), heavy=heavy)
    np.testing.assert_array_equal(_host(got)[:64], hamming.cdist(q[:64], db))


TOPK = ["thrifty cuda", "thrifty cuda per-query kernel", "thrifty cpu", "torch matmul bf16"]


def _per_query_topk(q: Any, db: Any, k: int) -> tuple[Any, Any]:
    return topk_gpu(q, db, k, kernel="per-query")


@pytest.mark.parametrize("solver", TOPK)
def test_hamming_topk(benchmark: Any, solver: str) -> None:
    q, db, k = codes(2, 1024, 32), codes(3, 1_000_000, 32), 10
    dq, ddb = _codes_on(solver, q, db)
    fn: Callable[[Any, Any, int], tuple[Any, Any]] = {
        "torch matmul bf16": torch_matmul_topk,
        "thrifty cuda per-query kernel": _per_query_topk,
    }.get(solver, hamming.topk)
    role = "ours" if solver == "thrifty cuda" else "baseline"
    heavy = solver == "thrifty cpu"
    got, _ = _run(benchmark, "gpu hamming topk", solver, role, lambda: fn(dq, ddb, k), heavy=heavy)
    # Ties make the indices differ between solvers; the distances may not.
    np.testing.assert_array_equal(_host(got)[:32], hamming.topk(q[:32], db, k)[0])


@functools.cache
def tall_matrix(n: int, d: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng([n, d])
    a: np.ndarray[Any, Any] = rng.standard_normal((n, d)) * (1.0 + rng.pareto(2.0, (n, 1)))
    return a


@pytest.mark.parametrize("solver", ["thrifty cuda", "thrifty cpu", "torch qr cuda"])
def test_leverage_scores(benchmark: Any, solver: str) -> None:
    a = tall_matrix(1_000_000, 50)
    group = "gpu leverage n=1e6 d=50"
    if solver == "thrifty cpu":
        got = _run(
            benchmark, group, solver, "baseline", lambda: coreset.leverage_scores(a), heavy=True
        )
    else:
        ta = torch.from_numpy(a).cuda()
        if solver == "thrifty cuda":
            got = _run(benchmark, group, solver, "ours", lambda: coreset.leverage_scores(ta))
        else:
            got = _run(benchmark, group, solver, "baseline", lambda: torch_leverage_scores(ta))
        got = got.cpu().numpy()
    np.testing.assert_allclose(got.sum(), 50.0, rtol=1e-9)


@pytest.mark.parametrize("solver", ["thrifty cuda", "thrifty cpu"])
def test_lewis_weights(benchmark: Any, solver: str) -> None:
    a = tall_matrix(1_000_000, 20)
    group = "gpu lewis p=1 n=1e6 d=20"
    if solver == "thrifty cpu":
        got = _run(
            benchmark, group, solver, "baseline", lambda: coreset.lewis_weights(a, 1.0), heavy=True
        )
    else:
        ta = torch.from_numpy(a).cuda()
        got = _run(benchmark, group, solver, "ours", lambda: coreset.lewis_weights(ta, 1.0))
        got = got.cpu().numpy()
    np.testing.assert_allclose(got.sum(), 20.0, rtol=1e-5)  # within tol of the fixed point


def _image_velocity(target: Any) -> Callable[[Any, Any], Any]:
    def velocity(x: Any, t: Any) -> Any:
        return (target.to(x.device) - x) / (1.05 - t)[:, None, None, None]

    return velocity


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_cost_matrix(benchmark: Any, device: str) -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(3, 32, 32, generator=gen)
    noise = torch.randn(2048, 3, 32, 32, generator=gen).to(device)
    grid = steps.time_grid(64, "edm")
    velocity = _image_velocity(target)
    role = "ours" if device == "cuda" else "baseline"
    cost = _run(
        benchmark,
        "gpu boss cost matrix 64 nodes 2048x3x32x32",
        f"thrifty {device}",
        role,
        lambda: steps.cost_matrix(velocity, grid, noise, progress=False),
        heavy=device == "cpu",
    )
    assert np.isfinite(cost[np.triu_indices(64, 1)]).all()


MUON = ["thrifty Muon", "torch.optim.Muon", "reference loop"]


@pytest.mark.parametrize("solver", MUON)
def test_muon_step(benchmark: Any, solver: str) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(1024, 1024, device="cuda", generator=gen)) for _ in range(24)
    ]
    for p in params:
        p.grad = torch.randn(p.shape, device="cuda", generator=gen)
    group = "gpu muon step 24x1024x1024"
    if solver == "reference loop":
        buffers = [torch.zeros_like(p) for p in params]
        grads = [p.grad for p in params if p.grad is not None]
        data = [p.data for p in params]
        _run(
            benchmark,
            group,
            solver,
            "baseline",
            lambda: per_parameter_muon_step(data, grads, buffers),
        )
        return
    if solver == "torch.optim.Muon":
        if not hasattr(torch.optim, "Muon"):
            pytest.skip("torch.optim.Muon needs PyTorch >= 2.9")
        opt: Any = torch.optim.Muon(params, lr=0.02, momentum=0.95, nesterov=True)
        role = "baseline"
    else:
        opt = optim.Muon(params, lr=0.02, momentum=0.95, nesterov=True)
        role = "ours"
    before = params[0].detach().clone()
    _run(benchmark, group, solver, role, opt.step)
    assert not torch.equal(before, params[0])
