"""Coresets for lp subspace embeddings: sample rows by a score, reweight."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from thrifty._checks import check_choice, check_length, check_positive, check_seed
from thrifty.coreset._coreset import Coreset
from thrifty.coreset._lewis import lewis_weights
from thrifty.coreset._sample import sample
from thrifty.coreset._scores import (
    Float64Array,
    checked_matrix,
    leverage_scores,
    root_leverage_scores,
)
from thrifty.coreset._sensitivity import lp_sensitivities
from thrifty.errors import InvalidArgumentError, NonFiniteError

Method = Literal["lewis", "leverage", "root_leverage", "sensitivity", "uniform"]
METHODS = ("lewis", "leverage", "root_leverage", "sensitivity", "uniform")


def scores_for(array: Float64Array, p: float, method: str) -> Float64Array:
    """The sampling scores of ``method`` for the checked matrix ``array``."""
    method = check_choice(method, "method", METHODS)
    if method == "lewis":
        return lewis_weights(array, p)
    if method == "leverage":
        return leverage_scores(array)
    if method == "root_leverage":
        return root_leverage_scores(array)
    if method == "sensitivity":
        return lp_sensitivities(array, p)
    if method == "uniform":
        # The other scores read A in Rust, which refuses NaN and infinity; so does this one.
        if not np.isfinite(array).all():
            raise NonFiniteError("A must be finite, got NaN or infinity", "A")
        return np.ones(array.shape[0], dtype=np.float64)
    raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}", "method")


def subspace_embedding(
    A: Any,  # noqa: N803 (the field's name)
    p: float,
    m: int,
    *,
    method: Method = "lewis",
    seed: int = 0,
    replace: bool = True,
) -> Coreset:
    """A weighted row sample ``S`` of ``A`` with ``||SAx||_{p,w} ~ ||Ax||_p`` for every ``x``.

    Rows are drawn with probability proportional to a score and weighted so that
    ``sum_j w_j |a_{i_j}^T x|^p`` is an unbiased estimate of ``||Ax||_p^p`` (see
    :func:`sample`).

    Parameters
    ----------
    A : array_like, shape (n, d)
        As for :func:`leverage_scores`.
    p : float
        The norm, ``p > 0``.
    m : int
        Rows to draw. How many suffice for distortion ``eps`` (up to log factors and
        ``eps^{-2}``): about ``d`` with Lewis weights for ``p < 2`` and ``d^{p/2}`` for
        ``p > 2`` (Cohen and Peng, arXiv 1412.0588); about ``d`` with root leverage scores
        for ``1 <= p < 2``, ``S^{2/p}`` (``p < 2``) or ``S^{2-2/p}`` (``p > 2``) with
        sensitivities of total ``S`` (Woodruff and Yasuda, arXiv 2306.00732).
    method : {"lewis", "leverage", "root_leverage", "sensitivity", "uniform"}
        The scores: :func:`lewis_weights` (default), :func:`leverage_scores` (right for
        ``p = 2``), :func:`root_leverage_scores`, :func:`lp_sensitivities`, or uniform.
    seed : int
        Seed of the draw (and of nothing else: the scores are deterministic).
    replace : bool
        Draw with replacement (default, weights ``1 / (m p_i)``) or without.

    Returns
    -------
    Coreset

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> A = np.random.default_rng(0).standard_normal((2000, 3))
    >>> c = coreset.subspace_embedding(A, 1.0, 300, seed=1)
    >>> bool(c.distortion(A, np.eye(3)) < 0.3)
    True
    """
    array = checked_matrix(A)
    value = check_positive(p, "p")
    draws = check_length(m, "m", minimum=1)
    seed = check_seed(seed)
    scores = scores_for(array, value, method)
    indices, weights = sample(scores, draws, replace=replace, seed=seed)
    return Coreset(indices, weights, p=value, method=method)
