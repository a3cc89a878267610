"""Per-sample gradient norms of a softmax classifier's last layer, in closed form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thrifty._extras import require
from thrifty.errors import DTypeError, InvalidArgumentError, ShapeError

if TYPE_CHECKING:
    import torch


def last_layer_gradient_norms(features: Any, logits: Any, targets: Any) -> torch.Tensor:
    """The norm of each sample's cross-entropy gradient with respect to the last layer.

    For ``logits = features @ W.T + b`` and the loss ``cross_entropy(z_i, y_i)``, the gradient
    of sample ``i`` is ``g_i [h_i, 1]^T`` with ``g_i = softmax(z_i) - onehot(y_i)``, a rank-one
    matrix, so its Frobenius norm over ``(W, b)`` is

        ``||softmax(z_i) - onehot(y_i)|| * sqrt(||h_i||^2 + 1)``,

    computed here for the whole batch at once, without per-sample backward passes. It is an
    upper-bound proxy for the full per-sample gradient norm (Katharopoulos and Fleuret,
    arXiv 1803.00942), a score for :class:`ImportanceSampler`.

    Parameters
    ----------
    features : torch.Tensor, shape (N, d)
        The inputs ``h_i`` of the last layer.
    logits : torch.Tensor, shape (N, C)
    targets : torch.Tensor of integers, shape (N,), in ``[0, C)``

    Returns
    -------
    torch.Tensor, shape (N,), detached, in the dtype of ``logits``.

    Examples
    --------
    >>> import torch
    >>> from thrifty import coreset
    >>> h = torch.tensor([[3.0, 4.0]])
    >>> norms = coreset.last_layer_gradient_norms(h, torch.zeros(1, 2), torch.tensor([0]))
    >>> round(norms.item(), 4)  # ||(0.5, 0.5) - (1, 0)|| * sqrt(9 + 16 + 1)
    3.6056
    """
    require("torch")
    import torch

    for name, value in (("features", features), ("logits", logits), ("targets", targets)):
        if not isinstance(value, torch.Tensor):
            raise DTypeError(f"{name} must be a torch tensor, got {type(value).__name__}", name)
    if features.ndim != 2:
        raise ShapeError(
            f"features must be 2-D (N, d), got shape {tuple(features.shape)}", "features"
        )
    if logits.ndim != 2 or logits.shape[0] != features.shape[0]:
        raise ShapeError(
            f"logits must be 2-D (N, C) with N = {features.shape[0]} like features, "
            f"got shape {tuple(logits.shape)}",
            "logits",
        )
    if targets.shape != (features.shape[0],):
        raise ShapeError(
            f"targets must have shape ({features.shape[0]},), got {tuple(targets.shape)}",
            "targets",
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise DTypeError(f"targets must hold class indices, got dtype {targets.dtype}", "targets")
    classes = logits.shape[1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        raise InvalidArgumentError(
            f"targets must lie in [0, {classes}), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]",
            "targets",
        )
    with torch.no_grad():
        residual = torch.softmax(logits.detach(), dim=1)
        residual[torch.arange(len(targets), device=residual.device), targets.long()] -= 1.0
        h = features.detach().to(residual.dtype)
        norms: torch.Tensor = residual.norm(dim=1) * torch.sqrt((h * h).sum(dim=1) + 1.0)
    return norms
