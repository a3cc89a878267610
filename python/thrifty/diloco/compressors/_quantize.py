"""Block quantization: int8, fp8 (E4M3) or fp4 (E2M1) codes with one float32 scale a block."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from thrifty import _native
from thrifty._checks import check_choice, check_int, check_seed
from thrifty.diloco.compressors._base import (
    Compressor,
    _check_payload,
    _check_x,
    _reinterpret,
)

if TYPE_CHECKING:
    import torch

# The largest code magnitude of each format: a block's absmax maps onto it.
_QMAX = {"int8": 127.0, "fp8": 448.0, "fp4": 6.0}


def _pad4(nbytes: int) -> int:
    return (nbytes + 3) // 4 * 4


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
        self.format = check_choice(format, "format", _native.QUANTIZATIONS)
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
        check_seed(seed)
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

        check_seed(seed)
        _check_payload(payload, self.payload_bytes(numel))
        blocks, code_bytes = self._layout(numel)
        scale = _reinterpret(payload[: 4 * blocks], torch.float32)
        values = self._values(payload[4 * blocks : 4 * blocks + code_bytes], numel)
        per_value = scale.repeat_interleave(self._width(numel))[:numel]
        return values * per_value
