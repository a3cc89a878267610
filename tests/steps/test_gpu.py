"""The CUDA jump-error kernel against its CPU twin (runs only where CuPy sees a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from thrifty import steps

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_cost_matrix_on_cuda_equals_cpu(dtype: str, metric: str) -> None:
    torch = pytest.importorskip("torch")
    flow = steps.GaussianMixtureFlow.ring()
    noise = torch.randn(
        300, 2, generator=torch.Generator().manual_seed(0), dtype=getattr(torch, dtype)
    )
    grid = steps.time_grid(40, "edm")
    cpu = steps.cost_matrix(flow.velocity, grid, noise, metric=metric, progress=False)
    gpu = steps.cost_matrix(flow.velocity, grid, noise.cuda(), metric=metric, progress=False)
    # Entries that are zero in exact arithmetic (one-step jumps) come out as zero on one
    # side and as rounding (~1e-19) on the other: CUDA contracts x + h v into an FMA.
    atol = 1e-12 * float(cpu.max())
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4 if dtype == "float32" else 1e-10, atol=atol)


def test_image_states_on_cuda_equal_cpu() -> None:
    torch = pytest.importorskip("torch")
    target = torch.randn(3, 16, 16, dtype=torch.float64)

    # Nonlinear in x, so Euler jumps have errors well above rounding to compare.
    def velocity(x, t):  # type: ignore[no-untyped-def]
        return (target.to(x.device) - x) / (1.05 - t)[:, None, None, None] + torch.sin(3 * x)

    noise = torch.randn(12, 3, 16, 16, dtype=torch.float64)
    grid = steps.time_grid(25)
    cpu = steps.cost_matrix(velocity, grid, noise, progress=False)
    gpu = steps.cost_matrix(velocity, grid, noise.cuda(), progress=False)
    assert float(cpu.max()) > 1e-3
    np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12 * float(cpu.max()))
