"""Muon: momentum SGD whose update of each weight matrix is orthogonalised (Newton-Schulz)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from thrifty._checks import check_choice, check_int, check_rate, check_real
from thrifty._extras import require

require("torch")  # without torch, the error names the extra that installs it
import torch  # noqa: E402

from thrifty.errors import InvalidArgumentError, ShapeError  # noqa: E402
from thrifty.optim._newton_schulz import COEFFICIENTS, EPS, newton_schulz  # noqa: E402

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

# torch.optim.Muon's names (PyTorch >= 2.9, ``adjust_lr_fn``): the factor the learning rate
# of a (rows, cols) matrix is multiplied by.
ADJUST_LR: dict[str, Callable[[int, int], float]] = {
    # Keller Jordan: an orthogonal update of a tall matrix has a smaller RMS; restore it.
    "original": lambda rows, cols: math.sqrt(max(1.0, rows / cols)),
    # Moonshot (arXiv 2502.16982): match AdamW's update RMS, so AdamW's lr and decay carry.
    "match_rms_adamw": lambda rows, cols: 0.2 * math.sqrt(max(rows, cols)),
    # Bernstein, "Deriving Muon": the spectral condition, without the clamp at 1.
    "spectral_unclamped": lambda rows, cols: math.sqrt(rows / cols),
}


def check_options(
    *, lr: Any, momentum: Any, nesterov: Any, ns_steps: Any, weight_decay: Any, adjust_lr: Any
) -> dict[str, Any]:
    """Muon's hyper-parameters, checked, as a param-group dict."""
    if not isinstance(nesterov, bool):
        raise InvalidArgumentError(
            f"nesterov must be a bool, got {type(nesterov).__name__}", "nesterov"
        )
    check_choice(adjust_lr, "adjust_lr", sorted(ADJUST_LR))
    return {
        "lr": check_rate(lr, "lr"),
        "momentum": check_real(momentum, "momentum", low=0.0, high=1.0, high_open=True),
        "nesterov": nesterov,
        "ns_steps": check_int(ns_steps, "ns_steps", minimum=1),
        "weight_decay": check_rate(weight_decay, "weight_decay", positive=False),
        "adjust_lr": adjust_lr,
    }


def closure_loss(closure: Callable[[], Any] | None) -> Any:
    """``closure()`` with gradients on (``step`` itself runs under ``no_grad``), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def check_matrix(param: Any, argument: str) -> None:
    if param.ndim < 2:
        raise ShapeError(
            f"{argument} must hold only matrices or conv weights (>= 2-D), got a parameter "
            f"of shape {tuple(param.shape)}; give biases, norms and embeddings to AdamW "
            "(see thrifty.optim.muon_param_groups)",
            argument,
        )


def add_scaled(param: Any, update: Any, alpha: float) -> None:
    """``param += alpha * update``, also for an ``alpha`` past the range of ``param``'s dtype
    (a huge lr times a shape factor), which torch refuses as an ``alpha``: the product is then
    formed in float64 and rounded once, so entries overflow to infinity and zeros stay zero."""
    if abs(alpha) <= torch.finfo(param.dtype).max:
        param.add_(update, alpha=alpha)
    else:
        param.add_((update.double() * alpha).to(param.dtype))


def muon_update(params: list[Any], momentum_buffers: list[Any], group: dict[str, Any]) -> None:
    """One Muon step of ``params`` (their ``.grad`` set) with their momentum buffers.

    Same-shape updates are stacked and orthogonalised by one batched Newton-Schulz.
    """
    mu = group["momentum"]
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    updates = []
    for index, (param, buffer) in enumerate(zip(params, momentum_buffers, strict=True)):
        grad = param.grad
        # Keller Jordan's form (also torch.optim.Muon's): an EMA of gradients, and the
        # Nesterov look-ahead between it and the fresh gradient.
        buffer.lerp_(grad, 1 - mu)
        update = grad.lerp(buffer, mu) if group["nesterov"] else buffer
        # Conv weights (out, in, kh, kw) are the matrix (out, in * kh * kw).
        update = update.reshape(update.size(0), -1)
        updates.append(update)
        by_shape[tuple(update.shape)].append(index)
    for (rows, cols), indices in by_shape.items():
        orthogonal = newton_schulz(
            torch.stack([updates[i] for i in indices]),
            steps=group["ns_steps"],
            coefficients=COEFFICIENTS,
            eps=EPS,
        )
        scaled_lr = group["lr"] * ADJUST_LR[group["adjust_lr"]](rows, cols)
        for i, update in zip(indices, orthogonal.unbind(0), strict=True):
            param = params[i]
            # Decoupled decay with the unadjusted lr, as torch.optim.Muon does.
            param.mul_(1 - group["lr"] * group["weight_decay"])
            add_scaled(param, update.view_as(param), -scaled_lr)


class Muon(torch.optim.Optimizer):
    """Muon (MomentUm Orthogonalized by Newton-Schulz) for hidden weight matrices.

    Each step keeps ``B <- momentum * B + (1 - momentum) * g``, takes the Nesterov
    look-ahead ``(1 - momentum) * g + momentum * B`` (or ``B``), orthogonalises it with
    :func:`newton_schulz` (5 quintic steps, bfloat16 on CUDA, float32 on the CPU) and moves
    the weight by ``-lr * scale * O`` after decoupled decay ``w <- (1 - lr * wd) w``.
    Updates of the same shape are stacked and orthogonalised in one batched call. Conv
    weights ``(out, in, kh, kw)`` are orthogonalised as the matrix ``(out, in*kh*kw)``.

    Muon is for matrices only (>= 2-D); give embeddings, the output layer, biases and
    norms to AdamW, e.g. with :func:`muon_param_groups`.

    Parameters
    ----------
    params
        Parameters (each >= 2-D) or param-group dicts, as for any torch optimizer.
    lr
        Learning rate (0.02, Keller Jordan's Muon, https://kellerjordan.github.io/posts/muon/).
    momentum
        EMA coefficient of the gradient (0.95, same source).
    nesterov
        Whether to apply the Nesterov look-ahead (True, same source).
    ns_steps
        Newton-Schulz iterations (5, same source; arXiv 2502.16982).
    weight_decay
        Decoupled weight decay (0.0; arXiv 2502.16982 uses 0.1 at scale).
    adjust_lr
        How the learning rate scales with the ``(rows, cols)`` shape, with the names of
        ``torch.optim.Muon``'s ``adjust_lr_fn``: ``"original"`` (Keller Jordan's
        ``max(1, rows/cols) ** 0.5``), ``"match_rms_adamw"`` (Moonshot's
        ``0.2 * max(rows, cols) ** 0.5``, arXiv 2502.16982, so AdamW's lr and decay
        carry over) or ``"spectral_unclamped"`` (``(rows/cols) ** 0.5``). For a conv
        weight, ``(rows, cols)`` is ``(out, in*kh*kw)``, the matrix it is
        orthogonalised as.

    Examples
    --------
    >>> import torch
    >>> from thrifty import optim
    >>> layer = torch.nn.Linear(8, 4, bias=False)
    >>> opt = optim.Muon(layer.parameters(), lr=0.02)
    >>> layer(torch.ones(2, 8)).sum().backward()
    >>> opt.step()
    >>> sorted(opt.state[layer.weight])
    ['momentum_buffer']
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adjust_lr: str = "original",
    ) -> None:
        defaults = check_options(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
            adjust_lr=adjust_lr,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        checked = check_options(**{name: group[name] for name in self.defaults})
        group.update(checked)
        for param in group["params"]:
            check_matrix(param, "params")

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for name, value in self.defaults.items():
                group.setdefault(name, value)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            buffers = []
            for param in params:
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param.grad)
                buffers.append(state["momentum_buffer"])
            muon_update(params, buffers, group)
        return loss
