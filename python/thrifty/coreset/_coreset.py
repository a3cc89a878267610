"""The coreset type: which rows, with what weights, and how well they preserve lp norms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thrifty._arrays import host_array
from thrifty.coreset._scores import Float64Array, checked_matrix
from thrifty.errors import ShapeError

Int64Array = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class Coreset:
    """Rows of a data set and their weights.

    ``sum_j weights[j] * f(row[indices[j]])`` estimates ``sum_i f(row_i)``; with
    replacement an index can appear more than once, and each appearance counts.

    Attributes
    ----------
    indices : numpy.ndarray of int64
        Rows kept, in draw order.
    weights : numpy.ndarray of float64
        Their weights, ``1 / (m p_i)`` when drawn with replacement.
    p : float
        The norm the coreset was built for (2 for k-means).
    method : str
        The scores that drove the sampling.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import coreset
    >>> c = coreset.Coreset(np.array([0, 1]), np.array([1.0, 1.0]), p=2.0, method="uniform")
    >>> c.distortion(np.eye(2), np.eye(2))
    0.0
    """

    indices: Int64Array = field(repr=False)
    weights: Float64Array = field(repr=False)
    p: float = 2.0
    method: str = "uniform"

    def __post_init__(self) -> None:
        indices = np.ascontiguousarray(self.indices, dtype=np.int64)
        weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        if indices.ndim != 1 or indices.shape != weights.shape:
            raise ShapeError(
                f"weights must be 1-D like indices {indices.shape}, got {weights.shape}",
                "weights",
            )
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "weights", weights)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __repr__(self) -> str:
        return (
            f"Coreset(m={self.indices.size}, distinct={np.unique(self.indices).size}, "
            f"p={self.p:g}, method={self.method!r})"
        )

    def norms(self, A: Any, xs: Any) -> Float64Array:  # noqa: N803 (the field's name)
        """``||Ax||_{p,S,w} = (sum_j weights[j] |a_{indices[j]}^T x|^p)^{1/p}`` per column."""
        array = checked_matrix(A)
        cols = _directions(xs, array.shape[1])
        sampled = np.abs(array[self.indices] @ cols) ** self.p
        result: Float64Array = (self.weights @ sampled) ** (1.0 / self.p)
        return result

    def distortion(self, A: Any, xs: Any) -> float:  # noqa: N803 (the field's name)
        """The smallest ``eps`` with ``(1 - eps) ||Ax||_p <= ||Ax||_{p,S,w} <= (1 + eps)
        ||Ax||_p`` for every column ``x`` of ``xs``: ``max_x | ||Ax||_{p,S,w} / ||Ax||_p - 1 |``.

        Columns with ``Ax = 0`` are skipped. ``xs`` has shape ``(d,)`` or ``(d, t)``.
        """
        array = checked_matrix(A)
        cols = _directions(xs, array.shape[1])
        full = (np.abs(array @ cols) ** self.p).sum(axis=0) ** (1.0 / self.p)
        ours = self.norms(array, cols)
        kept = full > 0
        if not kept.any():
            return 0.0
        return float(np.max(np.abs(ours[kept] / full[kept] - 1.0)))


def _directions(xs: Any, d: int) -> Float64Array:
    cols = host_array(xs, "xs", kinds="fiu", dtype=np.float64)
    if cols.ndim == 1:
        cols = cols[:, None]
    if cols.ndim != 2 or cols.shape[0] != d:
        raise ShapeError(f"xs must have shape ({d},) or ({d}, t), got {cols.shape}", "xs")
    return cols
