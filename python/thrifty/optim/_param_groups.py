"""Which parameters Muon should train and which belong to AdamW, read off a model's structure."""

from __future__ import annotations

from typing import Any, NamedTuple

from thrifty._checks import check_rate
from thrifty._extras import require

require("torch")  # without torch, the error names the extra that installs it
import torch  # noqa: E402

from thrifty.errors import InvalidArgumentError  # noqa: E402
from thrifty.optim._drop_muon import check_adamw  # noqa: E402

_MATRIX_LAYERS = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)
_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)


class MuonParamGroups(NamedTuple):
    """Param groups for :class:`Muon` and for ``torch.optim.AdamW``, each a list of dicts."""

    muon: list[dict[str, Any]]
    adamw: list[dict[str, Any]]


def muon_param_groups(
    model: Any,
    *,
    lr: float = 0.02,
    weight_decay: float = 0.0,
    adamw_lr: float = 3e-4,
    adamw_betas: tuple[float, float] = (0.9, 0.95),
    adamw_eps: float = 1e-10,
    adamw_weight_decay: float = 0.0,
    output_layer: Any = None,
) -> MuonParamGroups:
    """Split a model's parameters between Muon and an auxiliary AdamW, by structure.

    Muon is for the weight matrices of hidden layers (Keller Jordan's Muon; arXiv
    2502.16982). The rule looks at module types, never at parameter names:

    * **Muon**: the >= 2-D weights of ``nn.Linear`` and ``nn.Conv*`` modules, except the
      output layer's;
    * **AdamW**: everything else: all parameters of ``nn.Embedding`` / ``nn.EmbeddingBag``,
      all parameters of the output layer, every bias, every parameter of norm layers (they
      are 1-D), and parameters of any other module type. A parameter shared by a Muon
      candidate and an AdamW one (a head tied to the embedding) goes to AdamW.

    The output layer is ``output_layer`` if given, else the *last* ``nn.Linear`` or
    ``nn.Conv*`` in ``model.modules()`` order, which is the head whenever modules are
    registered in forward order (as in ``nn.Sequential`` and most models); pass it
    explicitly when they are not.

    Parameters
    ----------
    model
        A ``torch.nn.Module``.
    lr, weight_decay
        Muon's group (0.02, 0.0: Keller Jordan's Muon).
    adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay
        AdamW's group (3e-4, (0.9, 0.95), 1e-10, 0.0: Keller Jordan's ``MuonWithAuxAdam``).
    output_layer
        The module whose output is the model's output, when module order does not tell.

    Returns
    -------
    MuonParamGroups
        ``(muon, adamw)``: lists of param-group dicts (empty when a side has no
        parameters), for ``Muon(groups.muon)`` and ``torch.optim.AdamW(groups.adamw)``.
        Parameters with ``requires_grad=False`` are left out.

    Examples
    --------
    >>> import torch
    >>> from thrifty import optim
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Embedding(10, 8), torch.nn.Linear(8, 8), torch.nn.LayerNorm(8),
    ...     torch.nn.Linear(8, 10))
    >>> groups = optim.muon_param_groups(model)
    >>> [tuple(p.shape) for p in groups.muon[0]["params"]]
    [(8, 8)]
    >>> len(groups.adamw[0]["params"])
    6
    >>> muon, adamw = optim.Muon(groups.muon), torch.optim.AdamW(groups.adamw)
    """
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError(
            f"model must be a torch.nn.Module, got {type(model).__name__}", "model"
        )
    muon_options = {
        "lr": check_rate(lr, "lr"),
        "weight_decay": check_rate(weight_decay, "weight_decay", positive=False),
    }
    adamw = check_adamw(adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay)
    adamw_options = {
        "lr": adamw["adamw_lr"],
        "betas": adamw["adamw_betas"],
        "eps": adamw["adamw_eps"],
        "weight_decay": adamw["adamw_weight_decay"],
    }
    modules = list(model.modules())
    if output_layer is None:
        matrix_layers = [m for m in modules if isinstance(m, _MATRIX_LAYERS)]
        output_layer = matrix_layers[-1] if matrix_layers else None
    elif not any(m is output_layer for m in modules):
        raise InvalidArgumentError(
            f"output_layer must be a module of model, got a {type(output_layer).__name__} "
            "that is not in model.modules()",
            "output_layer",
        )
    candidates: dict[int, Any] = {}
    for module in modules:
        if isinstance(module, _MATRIX_LAYERS) and module is not output_layer:
            weight = module.weight
            if weight is not None and weight.ndim >= 2:
                candidates[id(weight)] = weight
    muon_params: list[Any] = []
    adamw_params: list[Any] = []
    # model.parameters() yields a shared parameter once, so each lands in exactly one group;
    # a tied head/embedding weight is also reached through the Embedding or head module.
    to_adamw = {
        id(p)
        for m in modules
        if isinstance(m, _EMBEDDINGS) or m is output_layer
        for p in m.parameters(recurse=False)
    }
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in candidates and id(param) not in to_adamw:
            muon_params.append(param)
        else:
            adamw_params.append(param)
    return MuonParamGroups(
        muon=[{"params": muon_params, **muon_options}] if muon_params else [],
        adamw=[{"params": adamw_params, **adamw_options}] if adamw_params else [],
    )
