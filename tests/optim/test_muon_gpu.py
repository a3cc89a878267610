"""Muon on CUDA (bfloat16 Newton-Schulz) against its float32 CPU twin (runs only with a GPU)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from thrifty import optim  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("shape", [(4, 96, 64), (64, 96), (3, 40, 200)])
def test_newton_schulz_on_cuda_lands_in_the_band(shape: tuple[int, ...]) -> None:
    g = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
    on_device = optim.newton_schulz(g.cuda())
    assert on_device.is_cuda
    assert on_device.dtype == g.dtype
    singular = torch.linalg.svdvals(on_device.double().cpu())
    assert bool(((singular > 0.6) & (singular < 1.25)).all())
    # bfloat16 rounding stays well inside the band's width: the twins agree closely.
    cpu = optim.newton_schulz(g)
    assert float((on_device.cpu() - cpu).norm() / cpu.norm()) < 0.05


def test_muon_steps_on_cuda_follow_the_cpu() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 64, bias=False), torch.nn.Tanh(), torch.nn.Linear(64, 8, bias=False)
    )
    twin = copy.deepcopy(model).cuda()
    x, y = torch.randn(256, 32), torch.randn(256, 8)
    pairs = [(model, optim.Muon(model.parameters(), lr=0.01), x, y)]
    pairs.append((twin, optim.Muon(twin.parameters(), lr=0.01), x.cuda(), y.cuda()))
    losses: list[list[float]] = [[], []]
    for _ in range(20):
        for (net, opt, inputs, targets), curve in zip(pairs, losses, strict=True):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(inputs), targets)
            loss.backward()
            opt.step()
            curve.append(float(loss.detach()))
    # Random targets: the loss falls only so far (about 1.13 to 0.97), the same on both.
    assert losses[1][-1] < losses[1][0] - 0.1
    for cpu_loss, gpu_loss in zip(*losses, strict=True):
        assert abs(gpu_loss - cpu_loss) < 0.01 * cpu_loss
    for cpu_param, gpu_param in zip(model.parameters(), twin.parameters(), strict=True):
        drift = (gpu_param.detach().cpu() - cpu_param.detach()).norm() / cpu_param.detach().norm()
        assert float(drift) < 0.05
    state = pairs[1][1].state_dict()
    assert all(
        buffer.is_cuda
        for s in state["state"].values()
        for buffer in s.values()
        if isinstance(buffer, torch.Tensor)
    )
