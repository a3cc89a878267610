"""Exact weighted sampling with and without replacement, in Rust, for n up to 10^9."""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array
from thrifty._checks import check_length, check_seed
from thrifty.errors import InvalidArgumentError

Int64Array = np.ndarray[Any, np.dtype[np.int64]]
Float64Array = np.ndarray[Any, np.dtype[np.float64]]


def checked_scores(scores: Any, argument: str = "scores") -> Float64Array:
    """Scores as a contiguous 1-D float64 array (converted once, shared when already so)."""
    return host_array(
        scores,
        argument,
        kinds="fiu",
        dtype=np.float64,
        ndim=1,
        gpu_hint="sampling runs on the CPU; move the scores there first (scores.cpu())",
    )


def draw(
    scores: Float64Array, m: int, replace: bool, seed: int
) -> tuple[Int64Array, Float64Array, float | None]:
    """The native draw on checked scores: indices, weights, and the rank threshold ``tau``."""
    drawn = _native.coreset_sample(scores, m, replace, seed)
    return drawn.indices, drawn.weights, drawn.threshold


def sample(
    scores: Any, m: int, *, replace: bool = True, seed: int = 0
) -> tuple[Int64Array, Float64Array]:
    """Draw ``m`` indices with probability proportional to ``scores``, with unbiasing weights.

    With ``p_i = scores_i / sum(scores)``:

    * ``replace=True``: ``m`` independent draws from ``p``, i.i.d. in the order returned
      (not sorted). Weight ``1 / (m p_i)`` per draw. For ``m < n / 4``, by inverse CDF on
      float64 partial sums kept per block of 64 scores (n / 8 bytes, never an n-long
      cumulative array): one parallel pass over the scores, then each chunk of 2^16 scores
      locates its sorted draws in one forward scan. For ``m >= n / 4``, by Walker's alias
      method with Vose's construction (O(n) build, O(1) per draw), which is then faster.
      Either way each ``p_i`` is exact up to float64 rounding: an absolute error of a few
      1e-16 (the sums' rounding and the 2^-53 grid of the uniforms), against the 2^-24
      relative rounding of ``torch.multinomial``'s float32 cumulative sum.
    * ``replace=False``: successive sampling (draw from ``p``, remove, renormalise, repeat),
      computed as the ``m`` smallest exponential ranks ``E_i / scores_i`` with the exponential
      jumps of Efraimidis and Spirakis (A-ExpJ, IPL 2006; arXiv 1012.0256), O(n) time and
      random numbers for only about ``m log(n / m)`` items, where ``n / m >= 64``; below
      that every item draws its rank and a parallel selection keeps the smallest, which is
      then faster. Indices come in draw order.
      Weight ``1 / pi_i``, the Horvitz-Thompson weight under rank conditioning (Cohen and
      Kaplan, PODC 2007; Duffield, Lund and Thorup, JACM 2007): with ``tau`` the
      ``(m + 1)``-th smallest rank, ``pi_i = 1 - exp(-scores_i tau)`` is the probability that
      ``i`` is drawn given the other ranks, and ``pi_i = 1`` when ``m`` equals the number of
      positive scores.

    Either way ``sum(weights * f[indices])`` is an unbiased estimate of ``sum(f)`` for any
    ``f`` that is zero where the score is zero. Zero scores are never drawn. The result
    depends only on ``seed``: not on the number of threads, nor on the platform.

    Parameters
    ----------
    scores : 1-D array or CPU tensor, length n
        Non-negative, finite, not all zero. Any float (or integer) dtype; converted to
        float64 once, and used without copying when it already is contiguous float64.
    m : int
        The number of draws, ``>= 0`` (0 gives empty arrays). Without replacement, at most
        the number of positive scores.
    replace : bool
        Draw with replacement (default) or without.
    seed : int
        In ``[0, 2**64)``.

    Returns
    -------
    indices : numpy.ndarray of int64, shape (m,)
    weights : numpy.ndarray of float64, shape (m,)

    Raises
    ------
    NonFiniteError
        ``scores`` holds NaN or infinity.
    InvalidArgumentError
        Negative or all-zero ``scores``; ``m`` negative, or above the number of positive
        scores without replacement. Without replacement, a positive score below ``2**-1018``
        (about 3.6e-307), whose exponential rank would overflow: rescale the scores.
    ShapeError
        ``scores`` is not 1-D, or is empty.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> scores = np.array([1.0, 0.0, 3.0])
    >>> indices, weights = coreset.sample(scores, 4, seed=0)
    >>> sorted(set(indices.tolist()) - {0, 2})
    []
    >>> bool(np.allclose(weights, 4.0 / (4 * scores[indices])))
    True
    >>> indices, weights = coreset.sample(scores, 2, replace=False)
    >>> sorted(indices.tolist()), weights.tolist()
    ([0, 2], [1.0, 1.0])
    """
    if not isinstance(replace, (bool, np.bool_)):
        raise InvalidArgumentError(f"replace must be a bool, got {replace!r}", "replace")
    count = check_length(m, "m", minimum=0)
    seed = check_seed(seed)
    checked = checked_scores(scores)
    indices, weights, _ = draw(checked, count, bool(replace), seed)
    return indices, weights
