"""Sparse compressors: the ``k`` largest magnitudes, or ``k`` coordinates drawn from the seed."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

from thrifty._checks import check_int, check_real, check_seed
from thrifty.diloco.compressors._base import (
    Compressor,
    _check_payload,
    _check_x,
    _reinterpret,
)
from thrifty.errors import InvalidArgumentError

if TYPE_CHECKING:
    import torch

_INT32_MAX = (1 << 31) - 1


def _count(fraction: float, numel: int) -> int:
    # The decimal value of fraction, so that 0.07 of 100 is 7 and not ceil(7.000000000000001).
    k = math.ceil(Fraction(repr(fraction)) * numel)
    return min(numel, max(1, k))


class TopK(Compressor):
    """Keep the ``k`` entries of largest magnitude, ``k = max(1, ceil(fraction * numel))``.

    The payload is ``k`` int32 indices (ascending) followed by their ``k`` float32 values:
    ``8 k`` bytes. Ties at the ``k``-th magnitude go to the lower index, so the selection is
    deterministic. NaN and infinities rank above every finite value, so they are always sent
    (up to ``k`` of them). ``TopK`` is contractive with ``delta = k / numel``, and its support
    differs between workers (``shared_support`` is False). Vectors are limited to
    ``2**31 - 1`` values by the int32 indices.

    Parameters
    ----------
    fraction
        The share of entries sent, in ``(0, 1]``; ``k`` is rounded up from its decimal value,
        so ``TopK(0.07)`` keeps 7 of 100.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import TopK
    >>> TopK(0.5).compress(torch.tensor([0.1, -3.0, 2.0, 0.5]), seed=0).tolist()
    [0.0, -3.0, 2.0, 0.0]
    """

    shared_support = False

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = check_real(fraction, "fraction", low=0.0, high=1.0, low_open=True)
        self.name = f"topk({self.fraction:g})"

    def _k(self, numel: int) -> int:
        if numel > _INT32_MAX:
            raise InvalidArgumentError(
                f"numel must be at most {_INT32_MAX} for TopK's int32 indices, got {numel}",
                "numel",
            )
        return _count(self.fraction, numel)

    def payload_bytes(self, numel: int) -> int:
        return 8 * self._k(check_int(numel, "numel", minimum=0))

    def delta(self, numel: int) -> float:
        return self._k(check_int(numel, "numel", minimum=0)) / numel if numel else 1.0

    def encode(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        import torch

        _check_x(x)
        check_seed(seed)
        n = x.numel()
        k = self._k(n)
        if k == n:
            indices = torch.arange(n, device=x.device)
        else:
            magnitude = torch.nan_to_num(x.abs(), nan=math.inf)
            # torch.topk breaks ties arbitrarily; the threshold plus an index-ordered pick of
            # the tied entries makes the choice deterministic in O(n).
            threshold = torch.topk(magnitude, k, sorted=False).values.min()
            above = torch.nonzero(magnitude > threshold).flatten()
            tied = torch.nonzero(magnitude == threshold).flatten()[: k - above.numel()]
            indices = torch.cat([above, tied]).sort().values
        values = x[indices]
        return torch.cat(
            [indices.to(torch.int32).view(torch.uint8), values.contiguous().view(torch.uint8)]
        )

    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        import torch

        check_seed(seed)
        k = self._k(check_int(numel, "numel", minimum=0))
        _check_payload(payload, 8 * k)
        indices = _reinterpret(payload[: 4 * k], torch.int32).long()
        values = _reinterpret(payload[4 * k :], torch.float32)
        # A payload from another compressor or a corrupted frame must not index past x.
        if k and bool(((indices < 0) | (indices >= numel)).any()):
            raise InvalidArgumentError(
                f"payload holds indices outside 0..{numel - 1}: not a TopK payload of {numel} "
                "values",
                "payload",
            )
        out = torch.zeros(numel, dtype=torch.float32, device=payload.device)
        out[indices] = values
        return out


class RandomK(Compressor):
    """Keep ``k = max(1, ceil(fraction * numel))`` coordinates chosen from the ``seed``.

    The coordinates come from a CPU ``torch.Generator`` seeded with ``seed``, so every
    worker passing the same seed picks the same ones, on any device, with the same torch
    version. Only the ``k`` float32 values travel: ``4 k`` bytes, and
    ``shared_support`` is True.

    The values are sent unscaled (not multiplied by ``numel / k``): the compressor stays
    contractive, ``E||C(x) - x||^2 = (1 - k / numel) ||x||^2``, which is what error feedback
    needs; the unbiased, scaled variant is not contractive. If ``x`` holds a NaN or an
    infinity, every sent value is NaN.

    Parameters
    ----------
    fraction
        The share of coordinates sent, in ``(0, 1]``.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import RandomK
    >>> c = RandomK(0.5)
    >>> x = torch.arange(1.0, 7.0)
    >>> y = c.compress(x, seed=3)
    >>> int((y != 0).sum()), torch.equal(y, c.compress(x, seed=3)), c.payload_bytes(6)
    (3, True, 12)
    """

    shared_support = True

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = check_real(fraction, "fraction", low=0.0, high=1.0, low_open=True)
        self.name = f"randomk({self.fraction:g})"
        # decode runs once per worker's payload with the same seed: draw the indices once.
        self._cached: tuple[tuple[int, int, str], torch.Tensor] | None = None

    def payload_bytes(self, numel: int) -> int:
        return 4 * _count(self.fraction, check_int(numel, "numel", minimum=0))

    def delta(self, numel: int) -> float:
        return _count(self.fraction, check_int(numel, "numel", minimum=0)) / numel if numel else 1.0

    def _indices(self, numel: int, seed: int, device: torch.device) -> torch.Tensor:
        import torch

        key = (seed, numel, str(device))
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        k = _count(self.fraction, numel)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        chosen = torch.randperm(numel, generator=generator)[:k].sort().values.to(device)
        self._cached = (key, chosen)
        return chosen

    def encode(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        import torch

        _check_x(x)
        values = x[self._indices(x.numel(), check_seed(seed), x.device)]
        # A device-side flag: no host sync, and a NaN reaches every receiver.
        values = torch.where(torch.isfinite(x).all(), values, math.nan)
        return values.contiguous().view(torch.uint8)

    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        import torch

        seed = check_seed(seed)
        _check_payload(payload, self.payload_bytes(numel))
        out = torch.zeros(numel, dtype=torch.float32, device=payload.device)
        out[self._indices(numel, seed, payload.device)] = _reinterpret(payload, torch.float32)
        return out
