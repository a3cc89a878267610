"""thrifty.hamming: Hamming distances, exact, bounded and approximate, text and binary codes.

Text against pattern (symbols are any 32-bit integers; bytes and str work directly):

* :func:`text_to_pattern`, :func:`text_to_patterns` -- the distance of a pattern to every
  window of a text, by naive counting, FFT, Abrahamson's split, kangaroo jumps (k-bounded)
  or a (1 + eps)-approximation, with ``method="auto"`` picking by measured crossovers.

Packed binary codes (rows of uint8, ``numpy.packbits`` bit order):

* :func:`pack` -- 0/1 bits to codes; :func:`simhash` -- codes from float embeddings.
* :func:`cdist`, :func:`topk`, :func:`radius` -- exact search with a run-time popcount
  kernel (AVX-512, AVX2, NEON); CuPy arrays and CUDA tensors use ``cuda/hamming.cu``.
* :class:`BinaryIndex` -- add, search, remove and save, with stable ids.
* :func:`near_duplicates` -- groups of near-identical codes, for deduplicating data.

Examples
--------
>>> import numpy as np
>>> from thrifty import hamming
>>> hamming.text_to_pattern("hamming", "ham").tolist()
[0, 2, 3, 3, 3]
>>> codes = hamming.pack(np.eye(4, 16, dtype=bool))
>>> hamming.cdist(codes, codes[:1]).ravel().tolist()
[0, 2, 2, 2]
"""

from __future__ import annotations

from thrifty.hamming._binary import cdist, pack, popcount_kernel, radius, radius_csr, topk
from thrifty.hamming._dedup import near_duplicates
from thrifty.hamming._index import BinaryIndex
from thrifty.hamming._simhash import simhash
from thrifty.hamming._text import Method, text_to_pattern, text_to_patterns

__all__ = [
    "BinaryIndex",
    "Method",
    "cdist",
    "near_duplicates",
    "pack",
    "popcount_kernel",
    "radius",
    "radius_csr",
    "simhash",
    "text_to_pattern",
    "text_to_patterns",
    "topk",
]
