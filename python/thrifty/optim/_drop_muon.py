"""Drop-Muon: each step updates a random suffix of the layers, and backpropagates only there."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from thrifty._checks import check_positive, check_rate, check_real, check_seed
from thrifty._extras import require

require("torch")  # without torch, the error names the extra that installs it
import torch  # noqa: E402

from thrifty.errors import InvalidArgumentError, ShapeError  # noqa: E402
from thrifty.optim._muon import (  # noqa: E402
    add_scaled,
    check_options,
    closure_loss,
    muon_update,
)

Distribution = Sequence[float] | torch.Tensor
Sampler = str | Distribution | Callable[[int], Distribution]


def check_distribution(weights: Any, layers: int) -> torch.Tensor:
    """Start-index weights as a float64 probability vector over ``layers`` indices."""
    try:
        probabilities = torch.as_tensor(weights, dtype=torch.float64).flatten().clone()
    except (TypeError, ValueError, RuntimeError) as error:
        raise InvalidArgumentError(
            f"sampler must give {layers} weights, one per start index, got "
            f"{type(weights).__name__}",
            "sampler",
        ) from error
    if probabilities.numel() != layers:
        raise ShapeError(
            f"sampler must give {layers} weights, one per start index, got {probabilities.numel()}",
            "sampler",
        )
    if not bool(torch.isfinite(probabilities).all()) or bool((probabilities < 0).any()):
        raise InvalidArgumentError(
            f"sampler weights must be finite and >= 0, got {probabilities.tolist()}", "sampler"
        )
    total = float(probabilities.sum())
    if total <= 0:
        raise InvalidArgumentError("sampler weights must not all be 0", "sampler")
    return probabilities / total


def adamw_update(params: list[Any], state: Any, group: dict[str, Any]) -> None:
    """torch.optim.AdamW's update (no amsgrad), for the non-matrix parameters of a layer."""
    beta1, beta2 = group["adamw_betas"]
    lr, eps = group["adamw_lr"], group["adamw_eps"]
    for param in params:
        grad = param.grad
        slot = state[param]
        if "exp_avg" not in slot:
            slot["step"] = 0
            slot["exp_avg"] = torch.zeros_like(param)
            slot["exp_avg_sq"] = torch.zeros_like(param)
        slot["step"] += 1
        step = slot["step"]
        param.mul_(1 - lr * group["adamw_weight_decay"])
        slot["exp_avg"].lerp_(grad, 1 - beta1)
        slot["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denominator = (slot["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        value = -lr / (1 - beta1**step)
        if abs(value) <= torch.finfo(param.dtype).max:
            param.addcdiv_(slot["exp_avg"], denominator, value=value)
        else:
            add_scaled(param, slot["exp_avg"] / denominator, value)


class DropMuon(torch.optim.Optimizer):
    """Drop-Muon (arXiv 2510.02239): update only layers ``s..L-1``, for a random ``s``.

    Call :meth:`begin_step` *before* the forward pass: it samples the start index ``s``
    and sets ``requires_grad_(False)`` on every parameter of ``layers[:s]``. Nothing
    below ``s`` then records an autograd graph, so ``backward()`` stops at layer ``s``:
    the saving the paper reports (up to 1.4x wall-clock on CNNs) is real, not an update
    skipped after a full backward pass. :meth:`step` updates ``layers[s:]`` and restores
    ``requires_grad``. Layers below ``s`` keep their weights, momentum and AdamW moments
    bit-for-bit. Without :meth:`begin_step`, :meth:`step` updates every layer (Muon).
    The backward pass can only stop where nothing below needs a gradient: if the model's
    input itself requires grad, or a parameter outside ``layers`` sits below ``s``, autograd
    still goes down there (those parameters are not trained by DropMuon either).

    Inside an updated layer, matrices and conv weights (>= 2-D) take Muon's update (see
    :class:`Muon`; each has its own momentum) and the other parameters (biases, norms)
    AdamW's. With a sampler that always draws 0, this is :class:`Muon` plus
    ``torch.optim.AdamW`` with the same settings.

    Parameters
    ----------
    layers
        The ``L`` layers in forward order (input side first), each an ``nn.Module`` with
        parameters; no parameter in two layers. Their parameters are all optimised.
    lr, momentum, nesterov, ns_steps, weight_decay, adjust_lr
        Muon's, as in :class:`Muon` (defaults there; ``lr`` has none here).
    adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay
        AdamW's for the non-matrix parameters (3e-4, (0.9, 0.95), 1e-10, 0.0: Keller
        Jordan's ``MuonWithAuxAdam``).
    sampler
        The distribution of the start index ``s`` over ``0..L-1``: ``"uniform"`` (the
        default, each ``s`` with probability ``1/L``), weights by start index (a sequence
        or tensor of ``L`` non-negative numbers, normalised; for a function of the layer
        index, pass ``[f(i) for i in range(L)]``), or a callable ``step -> weights`` that
        may change with progress (``step`` counts completed :meth:`step` calls).
    seed
        Seed of the ``torch.Generator`` that draws ``s``; the sequence of ``s`` depends on
        it (and on the sampler) only.

    Attributes
    ----------
    start : int | None
        The ``s`` of the step in progress (``None`` outside ``begin_step .. step``).
    steps : int
        Completed :meth:`step` calls.

    Examples
    --------
    >>> import torch
    >>> from thrifty import optim
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> layers = [torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)]
    >>> model = torch.nn.Sequential(*layers)
    >>> opt = optim.DropMuon(layers, lr=0.02, sampler=[0, 0, 1], seed=0)
    >>> s = opt.begin_step()
    >>> model(torch.ones(2, 4)).sum().backward()
    >>> s, layers[0].weight.grad is None, layers[2].weight.grad is None
    (2, True, False)
    >>> opt.step(); layers[0].weight.requires_grad
    True
    """

    def __init__(
        self,
        layers: Sequence[torch.nn.Module],
        *,
        lr: float,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adjust_lr: str = "original",
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        adamw_weight_decay: float = 0.0,
        sampler: Sampler = "uniform",
        seed: int = 0,
    ) -> None:
        modules = check_layers(layers)
        defaults = check_options(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
            adjust_lr=adjust_lr,
        )
        defaults.update(check_adamw(adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay))
        self.sampler = check_sampler(sampler, len(modules))
        self.generator = torch.Generator().manual_seed(check_seed(seed))
        self.layers = modules
        self.start: int | None = None
        self.steps = 0
        self._frozen: list[tuple[torch.nn.Parameter, bool]] = []
        groups = [{"params": list(m.parameters()), "layer": i} for i, m in enumerate(modules)]
        super().__init__(groups, defaults)

    def distribution(self) -> torch.Tensor:
        """The probabilities of ``s = 0..L-1`` for the next :meth:`begin_step`."""
        if isinstance(self.sampler, torch.Tensor):
            return self.sampler
        return check_distribution(self.sampler(self.steps), len(self.layers))

    def begin_step(self) -> int:
        """Sample ``s``, freeze ``layers[:s]`` (``requires_grad=False``) and return ``s``.

        Call it before the forward pass; calling it again before :meth:`step` unfreezes
        and draws anew.
        """
        self._unfreeze()
        start = int(torch.multinomial(self.distribution(), 1, generator=self.generator))
        for layer in self.layers[:start]:
            for param in layer.parameters():
                self._frozen.append((param, param.requires_grad))
                param.requires_grad_(False)
        self.start = start
        return start

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update ``layers[s:]`` (all layers without :meth:`begin_step`), then unfreeze."""
        loss = closure_loss(closure)
        start = 0 if self.start is None else self.start
        for group in self.param_groups:
            if group["layer"] < start:
                continue
            with_grad = [p for p in group["params"] if p.grad is not None]
            matrices = [p for p in with_grad if p.ndim >= 2]
            buffers = []
            for param in matrices:
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffers.append(state["momentum_buffer"])
            muon_update(matrices, buffers, group)
            adamw_update([p for p in with_grad if p.ndim < 2], self.state, group)
        self._unfreeze()
        self.steps += 1
        return loss

    def _unfreeze(self) -> None:
        for param, requires_grad in self._frozen:
            param.requires_grad_(requires_grad)
        self._frozen.clear()
        self.start = None

    def state_dict(self) -> dict[str, Any]:
        """Torch's optimizer state plus the generator's state and the step count."""
        state = super().state_dict()
        state["drop_muon"] = {"generator": self.generator.get_state(), "steps": self.steps}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (including where the sampler was)."""
        state = dict(state_dict)
        extra = state.pop("drop_muon", None)
        if extra is None:
            raise InvalidArgumentError(
                "state_dict has no 'drop_muon' entry: it was not saved by DropMuon",
                "state_dict",
            )
        self._unfreeze()
        super().load_state_dict(state)
        self.generator.set_state(extra["generator"])
        self.steps = int(extra["steps"])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for name, value in self.defaults.items():
                group.setdefault(name, value)


def check_layers(layers: Any) -> list[torch.nn.Module]:
    if isinstance(layers, torch.nn.Module) or not isinstance(layers, Sequence):
        raise InvalidArgumentError(
            f"layers must be a sequence of torch.nn.Module, got {type(layers).__name__}",
            "layers",
        )
    if len(layers) == 0:
        raise InvalidArgumentError("layers must not be empty", "layers")
    seen: set[int] = set()
    for index, layer in enumerate(layers):
        if not isinstance(layer, torch.nn.Module):
            raise InvalidArgumentError(
                f"layers[{index}] must be a torch.nn.Module, got {type(layer).__name__}",
                "layers",
            )
        params = list(layer.parameters())
        if not params:
            raise InvalidArgumentError(
                f"layers[{index}] ({type(layer).__name__}) has no parameters: merge it "
                "into a neighbour",
                "layers",
            )
        for param in params:
            if id(param) in seen:
                raise InvalidArgumentError(
                    f"layers[{index}] shares a parameter with an earlier layer", "layers"
                )
            seen.add(id(param))
    return list(layers)


def check_adamw(lr: Any, betas: Any, eps: Any, weight_decay: Any) -> dict[str, Any]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise InvalidArgumentError(f"adamw_betas must be a pair, got {betas!r}", "adamw_betas")
    return {
        "adamw_lr": check_rate(lr, "adamw_lr"),
        "adamw_betas": tuple(
            check_real(b, "adamw_betas", low=0.0, high=1.0, high_open=True) for b in betas
        ),
        "adamw_eps": check_positive(eps, "adamw_eps"),
        "adamw_weight_decay": check_rate(weight_decay, "adamw_weight_decay", positive=False),
    }


def check_sampler(sampler: Any, layers: int) -> torch.Tensor | Callable[[int], Distribution]:
    """A fixed probability vector, or the callable of progress (checked at each draw)."""
    if isinstance(sampler, str):
        if sampler != "uniform":
            raise InvalidArgumentError(
                f"sampler must be 'uniform', weights or a callable, got {sampler!r}", "sampler"
            )
        return torch.full((layers,), 1.0 / layers, dtype=torch.float64)
    if callable(sampler):
        return sampler  # type: ignore[no-any-return]
    return check_distribution(sampler, layers)
