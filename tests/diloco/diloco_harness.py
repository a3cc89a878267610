"""A small regression task and a training loop, shared by the DiLoCo process tests.

Each worker's batch at each step is a pure function of (worker, step), so runs can be
repeated, interrupted and resumed, and compared bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from thrifty import collective, diloco

IN, HIDDEN = 8, 32


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(IN, HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, 1),
    )


def batch(worker: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(((worker % 2**31) * 100_003 + step) % 2**62)
    x = torch.randn(16, IN, generator=generator)
    w = torch.linspace(-1, 1, IN)
    y = torch.tanh(x @ w).unsqueeze(1) + 0.1 * x[:, :1]
    return x, y


def params_hash(model: torch.nn.Module) -> str:
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return collective.state_hash(flat.numpy())


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    outer: Any,
    *,
    worker: int,
    until: int,
    pause_s: float = 0.0,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """Inner steps until ``outer.inner_steps == until``; the loss of each."""
    torch.set_num_threads(1)
    losses = []
    while outer.inner_steps < until:
        x, y = batch(worker, outer.inner_steps)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        outer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(outer.inner_steps)
        if pause_s:
            time.sleep(pause_s)
    return losses


def start(transport: Any, **kwargs: Any) -> tuple[torch.nn.Module, Any, Any]:
    """A fresh model (the same on every worker), AdamW, and DiLoCo over ``transport``
    (NoLoCo when ``kwargs`` has its ``beta``)."""
    torch.set_num_threads(1)
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    method = diloco.NoLoCo if "beta" in kwargs else diloco.DiLoCo
    return model, optimizer, method(model, optimizer, transport=transport, **kwargs)
