"""AdaGrad-Norm: AdaGrad with one scalar step size for all parameters of a group."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from thrifty._checks import check_rate, check_real
from thrifty.errors import InvalidArgumentError
from thrifty.optim._muon import closure_loss

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

__all__ = ["AdaGradNorm"]


class AdaGradNorm(torch.optim.Optimizer):
    """AdaGrad-Norm (Ward, Wu, Bottou, arXiv 1806.01811).

    One step size for the whole parameter group, adapted to the norms of the gradients seen
    so far::

        b_t^2 = b_{t-1}^2 + ||g_t||^2        (||g_t||: over every parameter of the group)
        x_t   = x_{t-1} - lr / (b_t + eps) * g_t

    It is the scalar counterpart of AdaGrad that AdAdaGrad (arXiv 2402.11215) pairs with
    its adaptive batch sizes. Unlike per-coordinate AdaGrad it keeps one number per group,
    and it converges without tuning ``lr`` to the smoothness constant.

    Parameters
    ----------
    params
        Parameters or parameter groups, as for any torch optimizer.
    lr
        ``eta``, default 1.0 (arXiv 1806.01811 takes eta = 1 in its experiments; the
        method is robust to it).
    initial_accumulator_value
        ``b_0^2``, default 0.0; a larger value damps the first steps.
    eps
        Added to ``b_t`` so that a zero first gradient does not divide by zero, default 1e-10
        (as ``torch.optim.Adagrad``).
    weight_decay
        L2 penalty added to the gradient before its norm is taken, default 0.

    Notes
    -----
    The group's accumulator lives in the state of the group's first parameter (key
    ``"sum"``), so it goes through ``state_dict`` like any per-parameter state.

    Examples
    --------
    >>> import torch
    >>> from thrifty.optim import AdaGradNorm
    >>> x = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    >>> optimizer = AdaGradNorm([x], lr=1.0)
    >>> x.grad = torch.tensor([3.0, 4.0])
    >>> optimizer.step()
    >>> x.detach()  # b_1 = 5, so x - g / 5
    tensor([2.4000, 3.2000])
    """

    def __init__(
        self,
        params: ParamsT,
        *,
        lr: float = 1.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": check_rate(lr, "lr"),
            "initial_accumulator_value": check_real(
                initial_accumulator_value, "initial_accumulator_value", low=0.0
            ),
            "eps": check_real(eps, "eps", low=0.0),
            "weight_decay": check_rate(weight_decay, "weight_decay", positive=False),
        }
        if isinstance(params, torch.Tensor):
            raise InvalidArgumentError(
                "params must be an iterable of tensors or of parameter groups, got a tensor",
                "params",
            )
        super().__init__(params, defaults)
        for group in self.param_groups:
            check_rate(group["lr"], "lr")
            check_rate(group["weight_decay"], "weight_decay", positive=False)
            for name in ("initial_accumulator_value", "eps"):
                check_real(group[name], name, low=0.0)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("initial_accumulator_value", 0.0)
            group.setdefault("eps", 1e-10)
            group.setdefault("weight_decay", 0.0)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Take one step; ``closure`` re-evaluates the loss when given."""
        loss: float | None = closure_loss(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise InvalidArgumentError(
                        "AdaGradNorm does not take sparse gradients", "params"
                    )
            grads = [
                p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                for p in params
            ]
            # The accumulator is a float64 scalar: long runs add many small squares to it.
            square = sum(float(g.double().square().sum()) for g in grads)
            if not math.isfinite(square):
                raise InvalidArgumentError("the gradients hold NaN or infinity", "params")
            holder = self.state[group["params"][0]]
            if "sum" not in holder:
                holder["sum"] = torch.tensor(
                    group["initial_accumulator_value"], dtype=torch.float64
                )
                holder["step"] = torch.tensor(0.0)
            holder["sum"] += square
            holder["step"] += 1
            denominator = math.sqrt(float(holder["sum"])) + group["eps"]
            scale = group["lr"] / denominator if denominator > 0.0 else math.inf
            if math.isinf(scale):
                continue  # every gradient so far was (about) zero: nothing to move along
            for p, g in zip(params, grads, strict=True):
                if scale > torch.finfo(p.dtype).max:
                    # Tiny gradients: the step size overflows p's dtype, their product not.
                    p.sub_((g.double() * scale).to(p.dtype))
                else:
                    p.add_(g, alpha=-scale)
        return loss
