"""Newton-Schulz orthogonalisation: the map ``G = U S V^T -> ~U V^T`` that Muon applies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thrifty._checks import FLOAT32_MAX, check_int, check_real
from thrifty._extras import require
from thrifty.errors import InvalidArgumentError, ShapeError

# Keller Jordan's quintic (https://kellerjordan.github.io/posts/muon/, arXiv 2502.16982):
# chosen for the largest slope at zero, so 5 steps lift small singular values close to 1
# at the price of not converging exactly (they end up in a band around 1, not at 1).
COEFFICIENTS = (3.4445, -4.7750, 2.0315)
STEPS = 5
EPS = 1e-7
_FLOAT32_TINY = 1.1754943508222875e-38


def newton_schulz(
    matrices: Any,
    *,
    steps: int = STEPS,
    coefficients: tuple[float, float, float] = COEFFICIENTS,
    eps: float = EPS,
) -> Any:
    """Orthogonalise a matrix, or a stack of same-shape matrices, in one batched pass.

    Each step maps ``X -> a X + (b X X^T + c (X X^T)^2) X`` after scaling ``X`` to
    Frobenius norm 1 (so its spectral norm is at most 1). With the default quintic
    coefficients (3.4445, -4.7750, 2.0315) and 5 steps (Keller Jordan's Muon; arXiv
    2502.16982) singular values of a well-conditioned input land in a band around 1
    (measured on matrices up to 128 x 128: within [0.68, 1.14] for condition numbers up to
    10, [0.68, 1.21] up to 100; smaller values stay below 0.68), not exactly on 1.

    On CUDA the iteration runs in bfloat16 (tensor cores; the band above absorbs its
    rounding), on the CPU in float32 (bfloat16 matmuls are no faster there). The result
    has the input's dtype.

    Parameters
    ----------
    matrices
        A torch tensor of shape ``(..., rows, cols)``; leading dimensions are a batch.
    steps
        Newton-Schulz iterations (5 in arXiv 2502.16982).
    coefficients
        ``(a, b, c)`` of the quintic.
    eps
        Floor of the norm the input is divided by, so a zero matrix stays zero.

    Returns
    -------
    torch.Tensor
        The orthogonalised matrices, same shape and dtype as ``matrices``.

    Examples
    --------
    >>> import torch
    >>> from thrifty import optim
    >>> g = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    >>> s = torch.linalg.svdvals(optim.newton_schulz(g))
    >>> bool(((s > 0.6) & (s < 1.2)).all())
    True
    """
    torch = require("torch")
    if not isinstance(matrices, torch.Tensor):
        raise InvalidArgumentError(
            f"matrices must be a torch.Tensor, got {type(matrices).__name__}", "matrices"
        )
    if matrices.ndim < 2:
        raise ShapeError(
            f"matrices must have at least 2 dimensions, got shape {tuple(matrices.shape)}",
            "matrices",
        )
    steps = check_int(steps, "steps", minimum=1)
    if (
        isinstance(coefficients, (str, bytes))
        or not isinstance(coefficients, Sequence)
        or len(coefficients) != 3
    ):
        raise InvalidArgumentError(
            f"coefficients must be three numbers (a, b, c), got {coefficients!r}", "coefficients"
        )
    a, b, c = (check_real(value, "coefficients") for value in coefficients)
    # The floor is applied in float32 (bfloat16 on CUDA): below their smallest normal number
    # it rounds to 0 and a zero matrix turns to NaN; above their largest it cannot be held.
    eps = check_real(eps, "eps", low=_FLOAT32_TINY, high=FLOAT32_MAX)
    work = torch.bfloat16 if matrices.is_cuda else torch.float32
    x = matrices.to(work)
    # X X^T is the smaller Gram matrix when rows <= cols: iterate on the wide side.
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = b * gram + c * (gram @ gram)
        x = a * x + polynomial @ x
    if tall:
        x = x.mT
    return x.to(matrices.dtype)
