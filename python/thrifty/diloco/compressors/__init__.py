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

from thrifty.diloco.compressors._base import Compressor
from thrifty.diloco.compressors._feedback import EControl, ErrorFeedback, Feedback
from thrifty.diloco.compressors._lgreco import LGreCo
from thrifty.diloco.compressors._quantize import BlockQuantizer
from thrifty.diloco.compressors._sparse import RandomK, TopK

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
