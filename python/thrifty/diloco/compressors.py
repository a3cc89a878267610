"""Compressors for the vectors workers exchange, and the error feedback that makes them converge.

A :class:`Compressor` turns a flat float32 tensor into a fixed-size ``uint8`` payload and back.
Fixed size matters: every worker's payload has the same shape, so payloads can be exchanged
with one all-gather. Three compressors are provided:

- :class:`TopK`: the ``k`` largest magnitudes, sent as int32 indices and float32 values;
- :class:`RandomK`: ``k`` coordinates drawn from the exchange's ``seed``, the same on every
  worker, so only the values travel;
- :class:`BlockQuantizer`: int8, fp8 (E4M3) or fp4 (E2M1) codes with one float32 scale per
  block of values, for a vector of any length (the last block may be partial).

:class:`LGreCo` (arXiv 2210.17357) picks one of several compressors per layer, the fewest
bytes within the error of a uniform default, re-planned every few exchanges.

All three are *contractive*: ``||C(x) - x||^2 <= (1 - delta) ||x||^2`` for some ``delta`` in
``(0, 1]`` (for :class:`RandomK`, in expectation over the seed). Contractive compressors are
biased, and averaging biased compressed gradients stalls away from the optimum; the two error
feedback wrappers fix that:

- :class:`ErrorFeedback`: classic error feedback (Seide et al. 2014; Karimireddy et al. 2019,
  arXiv 1901.09847), which resends what compression dropped;
- :class:`EControl`: error control (Gao, Islamov and Stich 2023, arXiv 2311.05645), which also
  learns each worker's share of the gradient and converges under data heterogeneity.

Non-finite input is never hidden: if ``x`` holds a NaN or an infinity, the decoded output holds
a NaN or an infinity too, so that a ``GradScaler`` or a loss-spike guard downstream still sees
it (no host synchronisation is needed to decide this).

Payloads are laid out in the machine's native byte order (little-endian on every platform torch
supports) and padded to a multiple of 4 bytes, so that the payloads of an all-gather stay
aligned for the float32 and int32 views taken when decoding.

Examples
--------
>>> import torch
>>> from thrifty.diloco.compressors import BlockQuantizer
>>> q = BlockQuantizer("int8")
>>> x = torch.linspace(-1, 1, 100)
>>> q.encode(x, seed=0).numel() == q.payload_bytes(100) == 2 * 4 + 100
True
>>> bool((q.compress(x, seed=0) - x).abs().max() <= 1 / 254)
True
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from thrifty._checks import check_choice, check_int, check_positive, check_real
from thrifty._extras import require
from thrifty.errors import DTypeError, InvalidArgumentError, ShapeError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BlockQuantizer",
    "Compressor",
    "EControl",
    "ErrorFeedback",
    "Feedback",
    "LGreCo",
    "RandomK",
    "TopK",
]

Int64Array = np.ndarray[Any, np.dtype[np.int64]]
Float64Array = np.ndarray[Any, np.dtype[np.float64]]

_FORMATS = ("int8", "fp8", "fp4")
# The largest code magnitude of each format: a block's absmax maps onto it.
_QMAX = {"int8": 127.0, "fp8": 448.0, "fp4": 6.0}
_SEED_MASK = (1 << 64) - 1
_INT32_MAX = (1 << 31) - 1


def _pad4(nbytes: int) -> int:
    return (nbytes + 3) // 4 * 4


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"seed must be an int, got {type(seed).__name__}", "seed")


def _check_x(x: object) -> None:
    import torch

    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"x must be a torch.Tensor, got {type(x).__name__}", "x")
    if x.dtype != torch.float32:
        raise DTypeError(f"x must be float32, got {x.dtype}", "x")
    if x.dim() != 1:
        raise ShapeError(f"x must be flat (1-D), got shape {tuple(x.shape)}", "x")


def _check_payload(payload: object, expected: int) -> None:
    import torch

    if not isinstance(payload, torch.Tensor):
        raise DTypeError(f"payload must be a torch.Tensor, got {type(payload).__name__}", "payload")
    if payload.dtype != torch.uint8:
        raise DTypeError(f"payload must be uint8, got {payload.dtype}", "payload")
    if payload.dim() != 1 or payload.numel() != expected:
        raise ShapeError(
            f"payload must be 1-D with {expected} bytes, got shape {tuple(payload.shape)}",
            "payload",
        )


def _reinterpret(data: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """View bytes as ``dtype``, copying first when the slice is not aligned for it."""
    import torch

    itemsize = torch.empty((), dtype=dtype).element_size()
    if data.numel() == 0:
        # An empty tensor may carry any stride, which view() refuses.
        return torch.empty(0, dtype=dtype, device=data.device)
    if data.storage_offset() % itemsize or not data.is_contiguous():
        data = data.clone()
    return data.view(dtype)


def _count(fraction: float, numel: int) -> int:
    # The decimal value of fraction, so that 0.07 of 100 is 7 and not ceil(7.000000000000001).
    k = math.ceil(Fraction(repr(fraction)) * numel)
    return min(numel, max(1, k))


class Compressor(ABC):
    """A lossy map from a flat float32 tensor to a fixed-size ``uint8`` payload and back.

    Subclasses set ``name`` and ``shared_support`` and implement :meth:`payload_bytes`,
    :meth:`encode` and :meth:`decode`; :meth:`compress` composes the last two. Constructing
    one needs torch (``pip install 'thrifty[torch]'``); importing this module does not.

    Attributes
    ----------
    name : str
        A short label such as ``"topk(0.01)"``, for logs and benchmark tables.
    shared_support : bool
        Whether every worker's payload covers the same coordinates for the same ``seed``, so
        that payload values could be summed directly.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import Compressor, TopK
    >>> c: Compressor = TopK(0.25)
    >>> x = torch.tensor([1.0, -4.0, 2.0, 0.5])
    >>> c.compress(x, seed=0).tolist()
    [0.0, -4.0, 0.0, 0.0]
    """

    name: str
    shared_support: bool = False

    def __init__(self) -> None:
        require("torch")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abstractmethod
    def payload_bytes(self, numel: int) -> int:
        """The exact size in bytes of :meth:`encode`'s output for ``numel`` values.

        Parameters
        ----------
        numel
            The length of the flat vector.

        Returns
        -------
        int
            The payload size; it depends on ``numel`` only.

        Examples
        --------
        >>> from thrifty.diloco.compressors import TopK
        >>> TopK(0.01).payload_bytes(1000)  # 10 int32 indices and 10 float32 values
        80
        """

    @abstractmethod
    def encode(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        """Compress a flat float32 tensor to its payload.

        Parameters
        ----------
        x
            A 1-D float32 tensor, on any device.
        seed
            An int every worker passes identically for the same exchange.

        Returns
        -------
        torch.Tensor
            A 1-D ``uint8`` tensor of ``payload_bytes(x.numel())`` bytes on ``x``'s device.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import BlockQuantizer
        >>> BlockQuantizer("fp4").encode(torch.ones(5), seed=0).shape
        torch.Size([8])
        """

    @abstractmethod
    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        """Expand a payload back to a flat float32 tensor of ``numel`` values.

        Parameters
        ----------
        payload
            What :meth:`encode` returned (any worker's), 1-D ``uint8``.
        numel
            The length of the vector that was encoded.
        seed
            The ``seed`` the payload was encoded with.

        Returns
        -------
        torch.Tensor
            A float32 tensor on the payload's device, zero where nothing was sent.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import TopK
        >>> c = TopK(0.5)
        >>> c.decode(c.encode(torch.tensor([3.0, 0.0, -1.0]), seed=0), 3, seed=0).tolist()
        [3.0, 0.0, -1.0]
        """

    def delta(self, numel: int) -> float:
        """A lower bound on the contraction ``delta`` for vectors of ``numel`` values.

        ``||C(x) - x||**2 <= (1 - delta) ||x||**2`` for every ``x`` (up to float32 rounding;
        for seeded compressors, in expectation over the seed). The base class returns 0,
        which promises nothing; error feedback such as :class:`EControl` takes its ``eta``
        of the order of ``delta``.

        Examples
        --------
        >>> from thrifty.diloco.compressors import TopK
        >>> TopK(0.01).delta(1000)
        0.01
        """
        check_int(numel, "numel", minimum=0)
        return 0.0

    def compress(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        """``decode(encode(x, seed=seed), x.numel(), seed=seed)``: what the receivers see.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import BlockQuantizer
        >>> BlockQuantizer("fp4").compress(torch.tensor([6.0, 2.9, -0.2]), seed=0).tolist()
        [6.0, 3.0, -0.0]
        """
        return self.decode(self.encode(x, seed=seed), x.numel(), seed=seed)


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
        _check_seed(seed)
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

        _check_seed(seed)
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

    The coordinates come from a CPU ``torch.Generator`` seeded with ``seed`` (modulo
    ``2**64``), so every worker passing the same seed picks the same ones, on any device, with
    the same torch version. Only the ``k`` float32 values travel: ``4 k`` bytes, and
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

        key = (seed & _SEED_MASK, numel, str(device))
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        k = _count(self.fraction, numel)
        generator = torch.Generator(device="cpu").manual_seed(seed & _SEED_MASK)
        chosen = torch.randperm(numel, generator=generator)[:k].sort().values.to(device)
        self._cached = (key, chosen)
        return chosen

    def encode(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        import torch

        _check_x(x)
        _check_seed(seed)
        values = x[self._indices(x.numel(), seed, x.device)]
        # A device-side flag: no host sync, and a NaN reaches every receiver.
        values = torch.where(torch.isfinite(x).all(), values, math.nan)
        return values.contiguous().view(torch.uint8)

    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        import torch

        _check_seed(seed)
        _check_payload(payload, self.payload_bytes(numel))
        out = torch.zeros(numel, dtype=torch.float32, device=payload.device)
        out[self._indices(numel, seed, payload.device)] = _reinterpret(payload, torch.float32)
        return out


def _e4m3_value(code: int) -> float:
    exponent, mantissa = code >> 3, code & 7
    if exponent == 0:
        return mantissa * 2.0**-9
    return (1 + mantissa / 8) * 2.0 ** (exponent - 7)


# The non-negative float8 E4M3FN values in code order, 0 to 448 (code 127 is NaN); exact in
# Python floats and in float32.
_FP8_VALUES = tuple(_e4m3_value(code) for code in range(127))
_FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _round_to_grid(y: torch.Tensor, grid: tuple[float, ...]) -> torch.Tensor:
    """Codes of the nearest grid value to ``|y|``, ties to the even code, sign in the top bit.

    ``grid`` holds the non-negative values of the format in code order (ascending). The
    sign bit sits just above the magnitude codes: bit 7 for fp8, bit 3 for fp4.
    """
    import torch

    # exact in float32: a midpoint needs one more mantissa bit than the format has
    midpoints = torch.tensor(
        [(low + high) / 2 for low, high in itertools.pairwise(grid)],
        dtype=torch.float32,
        device=y.device,
    )
    magnitude = y.abs().clamp(max=grid[-1])
    code = torch.bucketize(magnitude, midpoints)  # a tie lands on the lower code
    tie = magnitude == midpoints[code.clamp(max=midpoints.numel() - 1)]
    code = code + (tie & (code % 2 == 1)).to(code.dtype)
    sign_bit = 1 << (len(grid) - 1).bit_length()
    return (code + torch.signbit(y).to(code.dtype) * sign_bit).to(torch.uint8)


def _fp8_codes_by_table(y: torch.Tensor) -> torch.Tensor:
    """float8 E4M3FN codes of ``y`` (``|y| <= 448``) by round-to-nearest-even on the table."""
    return _round_to_grid(y, _FP8_VALUES)


def _float8_dtype() -> torch.dtype | None:
    import torch

    dtype: torch.dtype | None = getattr(torch, "float8_e4m3fn", None)
    return dtype


class BlockQuantizer(Compressor):
    """Quantize blocks of ``block`` values to int8, fp8 (E4M3) or fp4 (E2M1) with a scale each.

    Each block (the last one may be partial) gets one float32 scale, ``absmax / qmax``, and
    each value the code nearest to ``value / scale``:

    - ``"int8"``: integers in ``-127..127`` (``qmax = 127``), round half to even; the error
      is at most ``absmax / 254`` per value;
    - ``"fp8"``: float8 E4M3FN (``qmax = 448``), by torch's own ``float8_e4m3fn`` cast where
      torch has it, else by an exact table with the same round-to-nearest-even; the relative
      error is at most ``2**-4`` above the format's subnormals;
    - ``"fp4"``: E2M1 values ``±{0, 0.5, 1, 1.5, 2, 3, 4, 6}`` (``qmax = 6``), round to
      nearest with ties to the even code, two codes per byte (the first value in the low
      nibble).

    The payload is the ``ceil(numel / block)`` scales, then the codes (one byte each, half a
    byte for fp4), padded to a multiple of 4 bytes. Any vector length works, and so does any
    original shape once the caller flattens it. A block holding a NaN or an infinity decodes
    to NaN throughout. Per-block scaling follows QSGD-style bucketing (Alistarh et al. 2017,
    arXiv 1610.02132); ``block=64`` is a common choice.

    The quantizer is contractive. The worst block holds one value at its absmax and the
    ``b - 1`` others at the midpoint ``m`` between two codes, half a gap ``h`` from both (in
    code units), so ``1 - delta = max (b - 1) h**2 / (qmax**2 + (b - 1) m**2)`` over the
    midpoints, which :meth:`delta` computes. With ``block=64``, ``1 - delta`` is 0.00098
    for int8, 0.0033 for fp8 and 0.099 for fp4 (0.033 with ``block=8``).

    Parameters
    ----------
    format
        ``"int8"``, ``"fp8"`` or ``"fp4"``.
    block
        Values per scale, at least 1.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import BlockQuantizer
    >>> q = BlockQuantizer("fp4", block=4)
    >>> q.compress(torch.tensor([6.0, -3.0, 0.5, 1.2, 3.0]), seed=0).tolist()
    [6.0, -3.0, 0.5, 1.0, 3.0]
    >>> q.payload_bytes(5)  # 2 scales + 3 bytes of codes, padded
    12
    """

    shared_support = False

    def __init__(self, format: str, *, block: int = 64) -> None:
        super().__init__()
        self.format = check_choice(format, "format", _FORMATS)
        self.block = check_int(block, "block", minimum=1)
        self.qmax = _QMAX[format]
        self.name = f"{format}(block={block})"

    def _width(self, numel: int) -> int:
        """Values per row of the padded layout: a block, or the whole vector when it is
        shorter (one block then), so a huge ``block`` never pads a short vector to its size."""
        return min(self.block, max(numel, 1))

    def _layout(self, numel: int) -> tuple[int, int]:
        """(number of blocks, bytes of codes)."""
        blocks = -(-numel // self.block)
        code_bytes = (numel + 1) // 2 if self.format == "fp4" else numel
        return blocks, code_bytes

    def payload_bytes(self, numel: int) -> int:
        blocks, code_bytes = self._layout(check_int(numel, "numel", minimum=0))
        return _pad4(4 * blocks + code_bytes)

    def delta(self, numel: int) -> float:
        others = min(self.block, check_int(numel, "numel", minimum=0)) - 1
        if others <= 0:
            return 1.0
        if self.format == "int8":
            grid = [float(code) for code in range(128)]
        elif self.format == "fp8":
            grid = list(_FP8_VALUES)
        else:
            grid = list(_FP4_VALUES)
        worst = max(
            others * ((high - low) / 2) ** 2 / (self.qmax**2 + others * ((high + low) / 2) ** 2)
            for low, high in itertools.pairwise(grid)
        )
        return 1.0 - worst

    def encode(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        import torch

        _check_x(x)
        _check_seed(seed)
        n = x.numel()
        blocks, code_bytes = self._layout(n)
        width = self._width(n)
        padded = torch.zeros(blocks * width, dtype=torch.float32, device=x.device)
        padded[:n] = x
        rows = padded.view(blocks, width)
        absmax = rows.abs().amax(dim=1)  # NaN propagates through amax
        finite = torch.isfinite(absmax)
        scale = torch.where(finite, absmax / self.qmax, math.nan)
        divisor = torch.where(scale > 0, scale, 1.0)  # an all-zero block keeps scale 0
        y = torch.where(finite[:, None], rows / divisor[:, None], 0.0).flatten()[:n]
        codes = self._codes(y)
        parts = [scale.view(torch.uint8), codes]
        padding = self.payload_bytes(n) - 4 * blocks - code_bytes
        if padding:
            parts.append(torch.zeros(padding, dtype=torch.uint8, device=x.device))
        return torch.cat(parts)

    def _codes(self, y: torch.Tensor) -> torch.Tensor:
        import torch

        if self.format == "int8":
            return torch.round(y).clamp(-127, 127).to(torch.int8).view(torch.uint8)
        if self.format == "fp8":
            y = y.clamp(-448.0, 448.0)
            float8 = _float8_dtype()
            if float8 is None:
                return _fp8_codes_by_table(y)
            return y.to(float8).view(torch.uint8)
        nibbles = _round_to_grid(y, _FP4_VALUES)
        if nibbles.numel() % 2:
            nibbles = torch.cat([nibbles, nibbles.new_zeros(1)])
        return nibbles[0::2] | (nibbles[1::2] << 4)

    def _values(self, codes: torch.Tensor, numel: int) -> torch.Tensor:
        import torch

        if self.format == "int8":
            return codes.view(torch.int8).to(torch.float32)
        if self.format == "fp8":
            float8 = _float8_dtype()
            if float8 is not None:
                return codes.view(float8).to(torch.float32)
            positive = (*_FP8_VALUES, math.nan)
            table = torch.tensor(
                positive + tuple(-v for v in positive), dtype=torch.float32, device=codes.device
            )
            return table[codes.long()]
        table = torch.tensor(
            _FP4_VALUES + tuple(-v for v in _FP4_VALUES), dtype=torch.float32, device=codes.device
        )
        nibbles = torch.stack([codes & 0xF, codes >> 4], dim=1).flatten()[:numel]
        return table[nibbles.long()]

    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        import torch

        _check_seed(seed)
        _check_payload(payload, self.payload_bytes(numel))
        blocks, code_bytes = self._layout(numel)
        scale = _reinterpret(payload[: 4 * blocks], torch.float32)
        values = self._values(payload[4 * blocks : 4 * blocks + code_bytes], numel)
        per_value = scale.repeat_interleave(self._width(numel))[:numel]
        return values * per_value


def _mix_seed(seed: int, layer: int) -> int:
    # Each layer gets its own draw (RandomK would otherwise pick the same offsets in every
    # layer); an odd multiplier keeps distinct layers distinct modulo 2**64.
    return (seed + (layer + 1) * 0x9E3779B97F4A7C15) & _SEED_MASK


class LGreCo(Compressor):
    """L-GreCo: a compression level per layer, the smallest payload within an error budget.

    Markov, Alimohammadi, Frantar and Alistarh (arXiv 2210.17357) give each layer its own
    level out of ``candidates`` (bit widths, top-k fractions, ...), chosen by
    :func:`thrifty.schedule.lgreco`: the total payload is minimised subject to the summed
    squared error ``sum_l ||g_l - C_l(g_l)||^2`` staying within ``budget`` times the error of
    compressing every layer with the uniform ``default`` level. Layers whose values compress
    well give up bytes; layers that suffer get more.

    The flat vector is cut into ``layers`` (their sizes, in order); DiLoCo binds one copy per
    fragment from the fragment's parameters, and :func:`~thrifty.diloco.ddp_comm_hook` one
    per gradient bucket, both through :meth:`for_layers`. Before any choice every layer uses
    ``default``. Every ``every`` exchanges (DiLoCo: outer steps of a fragment; DDP: backward
    passes) each worker measures its own errors with :meth:`measure`, the workers sum the
    ``(layers, candidates)`` tables (one small all-gather, added in rank order so every worker
    gets the same bits), and :meth:`choose` re-plans; every worker reaches the same levels,
    so payloads keep one size and decode everywhere. Between choices the levels are fixed,
    which amortises the measuring (one compression per candidate and layer).

    A payload is the layers' payloads one after the other, each in its level's format; layer
    ``l`` is compressed with a seed derived from ``seed`` and ``l``. ``delta`` is the least
    over layers and candidates, so it holds whatever the levels become.

    Parameters
    ----------
    candidates
        The levels to choose from, each a :class:`Compressor` (not an ``LGreCo``), e.g.
        ``[TopK(0.01), BlockQuantizer("fp4"), BlockQuantizer("int8")]``.
    default
        Index in ``candidates`` of the uniform level the budget is measured against (the
        paper's "default compression parameters", e.g. the 4-bit format).
    budget
        The error allowed, as a multiple of the uniform ``default``'s summed error, finite
        and > 0; the paper constrains to that error, ``1.0``. Above 1 trades error for
        bytes. Below 1, when no choice meets it, every layer takes its least-error level.
    every
        Exchanges between two choices, >= 1 (10: our choice; the paper re-plans
        periodically, in its DDP setting every few thousand steps, and DiLoCo's outer steps
        are much rarer).
    layers
        The sizes of the layers of the flat vector, in order; ``None`` leaves the compressor
        unbound, for DiLoCo or the DDP hook to bind.
    buckets
        The discretisation of :func:`thrifty.schedule.lgreco` (its default when ``None``).
        Rounding may only make the DP more careful; when the uniform ``default`` is then both
        feasible and no larger, it is kept.

    Attributes
    ----------
    levels : numpy.ndarray of int64 or None
        The level of every layer, indices in ``candidates`` (``None`` when unbound).

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import BlockQuantizer, LGreCo, TopK
    >>> c = LGreCo([TopK(0.03), BlockQuantizer("fp4"), BlockQuantizer("int8")], default=1,
    ...            layers=[256, 256])
    >>> spiky = torch.zeros(256); spiky[::32] = 1.0     # all its energy in 8 entries
    >>> x = torch.cat([spiky, torch.linspace(-1, 1, 256)])
    >>> c.levels.tolist(), c.payload_bytes(512)         # uniform fp4: 144 bytes a layer
    ([1, 1], 288)
    >>> c.choose(c.measure(x)).tolist()                 # top-8 is exact on the spikes
    [0, 1]
    >>> c.payload_bytes(512), torch.equal(c.compress(x, seed=0)[:256], spiky)
    (208, True)
    """

    shared_support = False

    def __init__(
        self,
        candidates: Sequence[Compressor],
        *,
        default: int,
        budget: float = 1.0,
        every: int = 10,
        layers: Sequence[int] | None = None,
        buckets: int | None = None,
    ) -> None:
        super().__init__()
        if (
            isinstance(candidates, (str, bytes))
            or not isinstance(candidates, Sequence)
            or not candidates
            or not all(isinstance(c, Compressor) and not isinstance(c, LGreCo) for c in candidates)
        ):
            raise InvalidArgumentError(
                "candidates must be a non-empty sequence of Compressor (not LGreCo), "
                f"got {candidates!r}",
                "candidates",
            )
        self.candidates: tuple[Compressor, ...] = tuple(candidates)
        if (
            isinstance(default, bool)
            or not isinstance(default, int)
            or not 0 <= default < len(self.candidates)
        ):
            raise InvalidArgumentError(
                f"default must be an index in 0..{len(self.candidates) - 1} of candidates, "
                f"got {default!r}",
                "default",
            )
        self.default = default
        self.budget = check_positive(budget, "budget")
        self.every = check_int(every, "every", minimum=1)
        self.buckets = None if buckets is None else check_int(buckets, "buckets", minimum=1)
        self.layers: tuple[int, ...] | None = None
        self.levels: Int64Array | None = None
        if layers is not None:
            if (
                isinstance(layers, (str, bytes))
                or not isinstance(layers, Sequence)
                or not layers
                or not all(
                    not isinstance(n, bool) and isinstance(n, int) and n >= 1 for n in layers
                )
            ):
                raise InvalidArgumentError(
                    f"layers must be a non-empty sequence of ints >= 1, got {layers!r}",
                    "layers",
                )
            self.layers = tuple(int(n) for n in layers)
            self.levels = np.full(len(self.layers), self.default, dtype=np.int64)
        names = "|".join(c.name for c in self.candidates)
        self.name = f"lgreco({names}, default={default}, budget={self.budget:g}, every={every})"

    def for_layers(self, layers: Sequence[int]) -> LGreCo:
        """A copy with the same settings bound to ``layers``, every level at ``default``.

        Examples
        --------
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> LGreCo([TopK(0.1), TopK(0.5)], default=0).for_layers([3, 4]).levels.tolist()
        [0, 0]
        """
        return LGreCo(
            self.candidates,
            default=self.default,
            budget=self.budget,
            every=self.every,
            layers=layers,
            buckets=self.buckets,
        )

    def due(self, exchange_index: int) -> bool:
        """Whether exchange ``exchange_index`` (from 0, the same on every worker) re-plans.

        Examples
        --------
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> c = LGreCo([TopK(0.1)], default=0, every=3)
        >>> [i for i in range(7) if c.due(i)]
        [0, 3, 6]
        """
        return exchange_index % self.every == 0

    def digest(self) -> tuple[float, float]:
        """These settings, hashed, for the workers to compare before they plan.

        Workers whose settings differ would choose different levels and send payloads the
        others cannot decode; the collective would see only frames of the wrong length. The
        hash covers the candidates, ``default``, ``budget``, ``every``, ``buckets`` and the
        bound layer sizes, as two float64 values that hold 32 bits each exactly (so any
        transport's float all-gather carries them unchanged).

        Examples
        --------
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> a = LGreCo([TopK(0.1), TopK(0.5)], default=0, layers=[3, 4])
        >>> a.digest() == LGreCo([TopK(0.1), TopK(0.5)], default=0, layers=[3, 4]).digest()
        True
        >>> a.digest() == LGreCo([TopK(0.1), TopK(0.5)], default=1, layers=[3, 4]).digest()
        False
        """
        settings = repr((self.name, self.buckets, self.layers)).encode()
        word = int.from_bytes(hashlib.blake2b(settings, digest_size=8).digest(), "little")
        return float(word >> 32), float(word & 0xFFFF_FFFF)

    def check_digests(self, digests: Any, argument: str) -> None:
        """Raise unless every worker's :meth:`digest` (``(workers, 2)``, by rank) is this one's.

        ``argument`` is the parameter the caller took the compressor as, to name in the error.

        Examples
        --------
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> a = LGreCo([TopK(0.1)], default=0, every=2)
        >>> a.check_digests([a.digest(), a.digest()], "quantize")  # the same: nothing raised
        >>> b = LGreCo([TopK(0.1)], default=0, every=3)
        >>> a.check_digests([a.digest(), b.digest()], "quantize")
        Traceback (most recent call last):
        ...
        thrifty.errors.InvalidArgumentError: quantize: the workers' LGreCo settings differ ...
        """
        rows = np.asarray(digests, dtype=np.float64).reshape(-1, 2)
        mine = np.asarray(self.digest())
        others = [rank for rank, row in enumerate(rows) if not np.array_equal(row, mine)]
        if others:
            raise InvalidArgumentError(
                f"{argument}: the workers' LGreCo settings differ (candidates, default, budget, "
                f"every, buckets or layer sizes): ranks {others} hold other settings than this "
                f"worker's {self.name}, buckets={self.buckets}, layers={self.layers}. Every "
                "worker must pass the same compressor",
                argument,
            )

    def plan(self, tables: Any) -> Int64Array:
        """Re-plan from every worker's :meth:`measure` table, flattened, one row per rank.

        The rows are added in rank order, so every worker gets the same bits and chooses
        the same levels. Returns a copy of the new levels, as :meth:`choose`.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> c = LGreCo([TopK(0.5), TopK(1.0)], default=0, layers=[2, 2])
        >>> mine = c.measure(torch.tensor([3.0, 1.0, 2.0, 2.0])).reshape(-1)
        >>> c.plan([mine, mine]).tolist()
        [0, 0]
        """
        rows = np.asarray(tables, dtype=np.float64)
        layers, _ = self._bound(sum(self.layers or ()))
        shape = (len(layers), len(self.candidates))
        if rows.ndim != 2 or rows.shape[0] < 1 or rows.shape[1] != shape[0] * shape[1]:
            raise ShapeError(
                f"tables must have one row of {shape[0] * shape[1]} errors per worker, "
                f"got shape {rows.shape}",
                "tables",
            )
        total = rows[0].copy()
        for row in rows[1:]:
            total += row
        return self.choose(total.reshape(shape))

    def _bound(self, numel: int) -> tuple[tuple[int, ...], Int64Array]:
        if self.layers is None or self.levels is None:
            raise InvalidArgumentError(
                "this LGreCo has no layers: pass layers=..., or use it through DiLoCo or "
                "ddp_comm_hook, which bind one per fragment or bucket",
                "layers",
            )
        if numel != sum(self.layers):
            raise InvalidArgumentError(
                f"numel must be the layers' total {sum(self.layers)}, got {numel}", "numel"
            )
        return self.layers, self.levels

    def _payload_sizes(self, numel: int) -> list[int]:
        layers, levels = self._bound(numel)
        return [
            self.candidates[int(level)].payload_bytes(size)
            for size, level in zip(layers, levels, strict=True)
        ]

    def payload_bytes(self, numel: int) -> int:
        return sum(self._payload_sizes(check_int(numel, "numel", minimum=0)))

    def delta(self, numel: int) -> float:
        layers, _ = self._bound(check_int(numel, "numel", minimum=0))
        return min(c.delta(size) for size in layers for c in self.candidates)

    def sizes(self) -> Float64Array:
        """The ``(layers, candidates)`` table of payload bytes (the same on every worker).

        Examples
        --------
        >>> from thrifty.diloco.compressors import BlockQuantizer, LGreCo, TopK
        >>> LGreCo([TopK(0.5), BlockQuantizer("int8")], default=1, layers=[64]).sizes()
        array([[256.,  68.]])
        """
        layers, _ = self._bound(sum(self.layers or ()))
        return np.array(
            [[float(c.payload_bytes(size)) for c in self.candidates] for size in layers]
        )

    def measure(self, x: torch.Tensor, *, seed: int = 0) -> Float64Array:
        """This worker's ``(layers, candidates)`` table of squared errors ``||x_l - C(x_l)||^2``.

        Non-finite values give NaN entries, which :meth:`choose` skips.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> c = LGreCo([TopK(0.5), TopK(1.0)], default=0, layers=[2, 2])
        >>> c.measure(torch.tensor([3.0, 1.0, 2.0, 2.0])).tolist()
        [[1.0, 0.0], [4.0, 0.0]]
        """
        import torch

        _check_x(x)
        layers, _ = self._bound(x.numel())
        # Filled on x's device and copied once: no host sync per entry.
        table = torch.zeros(len(layers), len(self.candidates), dtype=torch.float64, device=x.device)
        pieces = torch.split(x, list(layers))
        for layer, piece in enumerate(pieces):
            layer_seed = _mix_seed(seed, layer)
            for level, compressor in enumerate(self.candidates):
                residual = compressor.compress(piece, seed=layer_seed) - piece
                table[layer, level] = residual.double().square().sum()
        errors: Float64Array = table.cpu().numpy()
        return errors

    def choose(self, errors: Any) -> Int64Array:
        """Re-plan from a ``(layers, candidates)`` error table (summed over workers).

        The budget is ``budget * errors[:, default].sum()``. The levels are kept when the
        table holds a NaN or an infinity (a skipped step). Returns a copy of the new levels.

        Examples
        --------
        >>> import numpy as np
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> c = LGreCo([TopK(0.1), TopK(0.5), TopK(1.0)], default=1, layers=[10, 100])
        >>> c.sizes().tolist()
        [[8.0, 40.0, 80.0], [80.0, 400.0, 800.0]]
        >>> c.choose(np.array([[9.0, 4.0, 0.0], [1.0, 0.5, 0.0]])).tolist()  # 160 bytes, not 440
        [2, 0]
        """
        from thrifty.schedule._lgreco import lgreco

        layers, levels = self._bound(sum(self.layers or ()))
        table = np.asarray(errors, dtype=np.float64)
        shape = (len(layers), len(self.candidates))
        if table.shape != shape:
            raise ShapeError(f"errors must have shape {shape}, got {table.shape}", "errors")
        if not np.isfinite(table).all():
            kept: Int64Array = levels.copy()
            return kept
        if (table < 0).any():
            raise InvalidArgumentError("errors must be >= 0", "errors")
        sizes = self.sizes()
        rows = np.arange(len(layers))
        allowed = self.budget * float(table[:, self.default].sum())
        options: list[Int64Array] = []
        # Rounding may leave no choice feasible for the DP (or its table may be too large for
        # the buckets asked); the uniform default may still be.
        with contextlib.suppress(InvalidArgumentError):
            options.append(lgreco(table, sizes, allowed, buckets=self.buckets))
        uniform = np.full(len(layers), self.default, dtype=np.int64)
        if float(table[rows, uniform].sum()) <= allowed:
            options.append(uniform)
        if options:
            chosen = min(
                options,
                key=lambda o: (float(sizes[rows, o].sum()), float(table[rows, o].sum())),
            )
        else:
            # Nothing meets a budget below the default's: come as close to it as possible.
            chosen = np.lexsort((sizes, table), axis=1)[:, 0].astype(np.int64)
        levels[:] = chosen
        new: Int64Array = levels.copy()
        return new

    def set_levels(self, levels: Any) -> None:
        """Adopt levels chosen elsewhere (a checkpoint, or a newcomer syncing its state).

        Examples
        --------
        >>> from thrifty.diloco.compressors import LGreCo, TopK
        >>> c = LGreCo([TopK(0.1), TopK(0.5)], default=0, layers=[3, 4])
        >>> c.set_levels([1, 0]); c.levels.tolist()
        [1, 0]
        """
        layers, current = self._bound(sum(self.layers or ()))
        new = np.asarray(levels)
        if new.shape != current.shape or new.dtype.kind not in "iu":
            raise ShapeError(
                f"levels must be {len(layers)} integers, got {new.dtype} of shape {new.shape}",
                "levels",
            )
        if ((new < 0) | (new >= len(self.candidates))).any():
            raise InvalidArgumentError(
                f"levels must be indices in 0..{len(self.candidates) - 1}, got {new.tolist()}",
                "levels",
            )
        current[:] = new

    def encode(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        import torch

        _check_x(x)
        _check_seed(seed)
        layers, levels = self._bound(x.numel())
        parts = [
            self.candidates[int(level)].encode(piece, seed=_mix_seed(seed, layer))
            for layer, (piece, level) in enumerate(
                zip(torch.split(x, list(layers)), levels, strict=True)
            )
        ]
        return torch.cat(parts)

    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        import torch

        _check_seed(seed)
        sizes = self._payload_sizes(check_int(numel, "numel", minimum=0))
        _check_payload(payload, sum(sizes))
        layers, levels = self._bound(numel)
        pieces = torch.split(payload, sizes)
        return torch.cat(
            [
                self.candidates[int(level)].decode(piece, size, seed=_mix_seed(seed, layer))
                for layer, (piece, size, level) in enumerate(
                    zip(pieces, layers, levels, strict=True)
                )
            ]
        )


class Feedback(ABC):
    """The interface both error feedback wrappers share, so training code can take either.

    A round goes: ``v = outgoing(g, state)``; every worker sends ``encode(v)``; once the
    exchange has succeeded, ``estimate = commit(g, state, sent, mean_sent)`` with ``sent`` this
    worker's decoded payload and ``mean_sent`` the mean of all workers' decoded payloads. A
    failed exchange that is retried calls :meth:`outgoing` again with the state untouched.

    :meth:`commit` leaves the state as it was when ``g`` or ``mean_sent`` holds a NaN or an
    infinity (the step an AMP ``GradScaler`` skips), and then returns a non-finite estimate so
    the skip still happens; the check runs on the device, without a host sync.

    Attributes
    ----------
    compressor : Compressor
        What compresses :meth:`outgoing`'s vector.
    name : str
        A short label such as ``"ef(topk(0.01))"``.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
    >>> fb = ErrorFeedback(TopK(0.5))
    >>> state = fb.init_state(4, "cpu")
    >>> g = torch.tensor([1.0, 0.1, -2.0, 0.2])
    >>> sent = fb.compressor.compress(fb.outgoing(g, state), seed=0)
    >>> fb.commit(g, state, sent, sent).tolist(), state["error"].tolist()
    ([1.0, 0.0, -2.0, 0.0], [0.0, 0.10000000149011612, 0.0, 0.20000000298023224])
    """

    compressor: Compressor
    name: str

    def __init__(self, compressor: Compressor) -> None:
        if not isinstance(compressor, Compressor):
            raise InvalidArgumentError(
                f"compressor must be a Compressor, got {type(compressor).__name__}", "compressor"
            )
        self.compressor = compressor

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abstractmethod
    def init_state(self, numel: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        """Fresh per-buffer state (float32 zeros of ``numel`` values on ``device``).

        Examples
        --------
        >>> from thrifty.diloco.compressors import EControl, TopK
        >>> sorted(EControl(TopK(0.1), eta=0.1).init_state(3, "cpu"))
        ['error', 'h_local', 'h_mean']
        """

    @abstractmethod
    def outgoing(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The vector to compress and send this round; the state is not changed.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
        >>> fb = ErrorFeedback(TopK(0.5))
        >>> fb.outgoing(torch.ones(2), fb.init_state(2, "cpu")).tolist()
        [1.0, 1.0]
        """

    @abstractmethod
    def commit(
        self,
        g: torch.Tensor,
        state: dict[str, torch.Tensor],
        sent: torch.Tensor,
        mean_sent: torch.Tensor,
    ) -> torch.Tensor:
        """Update the state in place after a successful exchange; return the mean estimate.

        Parameters
        ----------
        g
            The same local vector (gradient or pseudo-gradient) given to :meth:`outgoing`.
        state
            This buffer's state, from :meth:`init_state`.
        sent
            This worker's own payload, decoded.
        mean_sent
            The mean over workers of their decoded payloads.

        Returns
        -------
        torch.Tensor
            A new tensor: the estimate of the mean of ``g`` over workers to apply.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
        >>> fb = ErrorFeedback(TopK(0.5))
        >>> state = fb.init_state(2, "cpu")
        >>> g = torch.tensor([3.0, 1.0])
        >>> sent = fb.compressor.compress(fb.outgoing(g, state), seed=0)
        >>> fb.commit(g, state, sent, sent).tolist(), state["error"].tolist()
        ([3.0, 0.0], [0.0, 1.0])
        """

    @staticmethod
    def _check_state(
        g: torch.Tensor, state: dict[str, torch.Tensor], keys: tuple[str, ...]
    ) -> None:
        missing = [key for key in keys if key not in state]
        if missing:
            raise InvalidArgumentError(f"state lacks {missing}: make it with init_state", "state")
        if state[keys[0]].shape != g.shape:
            raise ShapeError(
                f"g must have the state's shape {tuple(state[keys[0]].shape)}, "
                f"got {tuple(g.shape)}",
                "g",
            )

    @staticmethod
    def _finite(*tensors: torch.Tensor) -> torch.Tensor:
        import torch

        flag = torch.isfinite(tensors[0]).all()
        for tensor in tensors[1:]:
            flag = flag & torch.isfinite(tensor).all()
        return flag


class ErrorFeedback(Feedback):
    """Classic error feedback: send ``C(g + e)`` and keep what was dropped, ``e``, for later.

    Seide et al. 2014 ("1-bit SGD") and Karimireddy et al. 2019 (arXiv 1901.09847). The
    state is ``{"error": e}``; :meth:`outgoing` is ``g + e``, and :meth:`commit` sets
    ``e <- (g + e) - sent`` and returns ``mean_sent``. With heterogeneous workers the
    iterates settle near, not at, the optimum (within a distance proportional to the step
    size); :class:`EControl` removes that bias.

    Parameters
    ----------
    compressor
        A contractive compressor, such as :class:`TopK`.

    Examples
    --------
    >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
    >>> ErrorFeedback(TopK(0.01)).name
    'ef(topk(0.01))'
    """

    def __init__(self, compressor: Compressor) -> None:
        super().__init__(compressor)
        self.name = f"ef({compressor.name})"

    def init_state(self, numel: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        import torch

        check_int(numel, "numel", minimum=0)
        return {"error": torch.zeros(numel, dtype=torch.float32, device=device)}

    def outgoing(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_state(g, state, ("error",))
        return g + state["error"]

    def commit(
        self,
        g: torch.Tensor,
        state: dict[str, torch.Tensor],
        sent: torch.Tensor,
        mean_sent: torch.Tensor,
    ) -> torch.Tensor:
        import torch

        self._check_state(g, state, ("error",))
        error = state["error"]
        finite = self._finite(g, mean_sent)
        error.copy_(torch.where(finite, g + error - sent, error))
        return mean_sent.clone()


class EControl(Feedback):
    """EControl: error feedback with a learned gradient shift (arXiv 2311.05645).

    Gao, Islamov and Stich 2023. Each worker keeps an error ``e`` and a shift ``h_local``
    (its running compressed gradient), and all workers share ``h_mean`` (the mean of the
    shifts, identical everywhere because it is built from exchanged values only). A round
    sends ``C(eta e + g - h_local)``; :meth:`commit` then sets
    ``e <- e + g - h_local - sent``, ``h_local <- h_local + sent`` and returns the estimate
    ``h_mean + mean_sent``, which becomes the new ``h_mean``. Because the shifts learn each
    worker's own gradient, EControl converges under data heterogeneity, where plain
    :class:`ErrorFeedback` keeps a bias.

    Parameters
    ----------
    compressor
        A contractive compressor, such as :class:`TopK`.
    eta
        How strongly the accumulated error is fed back, finite and > 0. The paper gives no
        universal default: its analysis takes ``eta`` small, of the order of the compressor's
        contraction ``delta`` (``k / numel`` for :class:`TopK`), and its experiments tune it.
        Start near ``delta``: much larger values diverge (on a quadratic with ``TopK(0.05)``,
        ``eta=0.2`` does while ``eta=0.05`` converges).

    Examples
    --------
    >>> from thrifty.diloco.compressors import EControl, TopK
    >>> EControl(TopK(0.05), eta=0.05).name
    'econtrol(topk(0.05), eta=0.05)'
    """

    def __init__(self, compressor: Compressor, eta: float) -> None:
        super().__init__(compressor)
        self.eta = check_positive(eta, "eta")
        self.name = f"econtrol({compressor.name}, eta={self.eta:g})"

    _KEYS = ("error", "h_local", "h_mean")

    def init_state(self, numel: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        import torch

        check_int(numel, "numel", minimum=0)
        return {key: torch.zeros(numel, dtype=torch.float32, device=device) for key in self._KEYS}

    def outgoing(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_state(g, state, self._KEYS)
        return self.eta * state["error"] + g - state["h_local"]

    def commit(
        self,
        g: torch.Tensor,
        state: dict[str, torch.Tensor],
        sent: torch.Tensor,
        mean_sent: torch.Tensor,
    ) -> torch.Tensor:
        import torch

        self._check_state(g, state, self._KEYS)
        error, h_local, h_mean = (state[key] for key in self._KEYS)
        finite = self._finite(g, mean_sent)
        estimate = h_mean + mean_sent
        error.copy_(torch.where(finite, error + g - h_local - sent, error))
        h_local.copy_(torch.where(finite, h_local + sent, h_local))
        h_mean.copy_(torch.where(finite, estimate, h_mean))
        return estimate
