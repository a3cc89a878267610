"""Text-to-pattern Hamming distances: exact, k-bounded and approximate, in Rust."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from thrifty import _native
from thrifty._checks import check_choice, check_int, check_real, check_seed
from thrifty.errors import DTypeError
from thrifty.hamming._inputs import text_and_patterns

Method = Literal["auto", "naive", "fft", "abrahamson", "kangaroo", "approx"]
Int32Array = np.ndarray[Any, np.dtype[np.int32]]

_U32_MAX = 2**32 - 1


def _options(
    k: int | None, eps: float | None, method: str, seed: int | None
) -> tuple[str, int | None, float | None, int]:
    check_choice(method, "method", _native.TEXT_METHODS)
    if k is not None:
        k = check_int(k, "k", minimum=0, maximum=_U32_MAX)
    if eps is not None:
        eps = check_real(eps, "eps", low=0.0, high=1.0, low_open=True, high_open=True)
    return method, k, eps, 0 if seed is None else check_seed(seed)


def text_to_pattern(
    text: Any,
    pattern: Any,
    *,
    k: int | None = None,
    eps: float | None = None,
    method: Method = "auto",
    seed: int | None = None,
) -> Int32Array:
    """The Hamming distance between ``pattern`` and every window of ``text``.

    ``out[i]`` counts the positions ``j`` with ``pattern[j] != text[i + j]``, for every
    ``i`` in ``0 .. n - m``. Symbols are arbitrary 32-bit integers: the cost depends on the
    number of distinct symbols in the pattern, never on the size of the alphabet.

    Methods:

    * ``"naive"``: count window by window, ``O(n m)``, vectorised; best for short patterns.
    * ``"fft"``: one real FFT correlation per letter of the pattern, ``O(sigma n log m)``
      (Fischer and Paterson, 1974).
    * ``"abrahamson"``: FFT for the frequent letters and a scan over the occurrences of the
      others, ``O(n sqrt(m log m))`` for any alphabet (Abrahamson, SIAM J. Comput. 1987).
    * ``"kangaroo"``: needs ``k``; jumps between mismatches over longest common extensions
      (Landau and Vishkin, 1986), ``O(n k)`` after a suffix array of text and pattern.
    * ``"approx"``: needs ``eps``; the maximum over ``ceil(log4 n) + 1`` random colourings
      of the alphabet into ``ceil(4 / eps)`` colours, after Kopelowitz and Porat
      (arXiv 1512.04515). Each reported distance ``d'`` satisfies ``d' <= d``, and
      ``d' >= (1 - eps) d`` with probability at least ``1 - 1 / (4 n)`` per position, over
      the colourings drawn from ``seed``. This is the usual (1 + eps) guarantee with all
      the error on one side: ``d' <= d <= d' / (1 - eps)``.
    * ``"auto"``: the cheapest of the above under a cost model with measured constants; it
      picks ``"approx"`` only when ``eps`` is given, and ``"kangaroo"`` only with ``k``.

    Parameters
    ----------
    text : bytes, str, or 1-D integer array or tensor, length n
        ``bytes`` are read as byte values, ``str`` as Unicode code points, and integer
        arrays (NumPy of any integer dtype, CPU torch tensors) as their values, which must
        lie in ``[0, 2**32)``. A contiguous uint32 array is used without copying.
    pattern : same kind of input as ``text``, length m with ``1 <= m <= n``
    k : int, optional
        Bound the distances: any distance above ``k`` is reported as ``k + 1`` (distances up
        to ``k`` are exact). Every method honours it; "kangaroo" needs it.
    eps : float, optional
        In (0, 1): the relative error that "approx" (and "auto") may make.
    method : {"auto", "naive", "fft", "abrahamson", "kangaroo", "approx"}
    seed : int, optional
        Seeds the colourings of "approx". None means 0, so that results are reproducible;
        the same seed gives the same distances on every platform.

    Returns
    -------
    numpy.ndarray of int32, shape (n - m + 1,)

    Examples
    --------
    >>> from thrifty import hamming
    >>> hamming.text_to_pattern(b"abracadabra", b"abra").tolist()
    [0, 4, 3, 3, 3, 3, 4, 0]
    >>> hamming.text_to_pattern("abracadabra", "abra", k=1).tolist()
    [0, 2, 2, 2, 2, 2, 2, 0]
    >>> import numpy as np
    >>> hamming.text_to_pattern(np.array([7, 2**31, 7]), np.array([2**31]), method="fft")
    array([1, 0, 1], dtype=int32)
    """
    options = _options(k, eps, method, seed)
    converted, (symbols,) = text_and_patterns(text, [pattern], "pattern")
    return _native.text_to_pattern(converted, symbols, *options)


def text_to_patterns(
    text: Any,
    patterns: Sequence[Any],
    *,
    k: int | None = None,
    eps: float | None = None,
    method: Method = "auto",
    seed: int | None = None,
) -> list[Int32Array]:
    """:func:`text_to_pattern` for many patterns over one text, sharing its preprocessing.

    The text's letter codes, the suffix structure of "kangaroo" and the colourings of
    "approx" are built once for all the patterns. Patterns may have different lengths, and
    with ``method="auto"`` each gets its own method.

    Parameters
    ----------
    text : bytes, str, or 1-D integer array or tensor
    patterns : sequence of the same kind of input as ``text``, or a 2-D integer array
    k, eps, method, seed
        As in :func:`text_to_pattern`.

    Returns
    -------
    list of numpy.ndarray of int32
        ``n - m_i + 1`` distances for pattern ``i``.

    Examples
    --------
    >>> from thrifty import hamming
    >>> [d.tolist() for d in hamming.text_to_patterns("banana", ["an", "nan"])]
    [[2, 0, 2, 0, 2], [1, 3, 0, 3]]
    """
    if isinstance(patterns, np.ndarray) and patterns.ndim == 2:
        patterns = list(patterns)
    if isinstance(patterns, (str, bytes, bytearray, memoryview)) or not isinstance(
        patterns, Sequence
    ):
        raise DTypeError(
            f"patterns must be a list of patterns, got {type(patterns).__name__}", "patterns"
        )
    options = _options(k, eps, method, seed)
    converted, symbols = text_and_patterns(text, list(patterns), "patterns")
    return _native.text_to_patterns(converted, symbols, *options)
