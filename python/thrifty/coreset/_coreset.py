"""The coreset type: which rows, with what weights, and how well they preserve lp norms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thrifty._arrays import host_array
from thrifty._checks import check_positive
from thrifty.coreset._scores import Float64Array, checked_matrix
from thrifty.errors import InvalidArgumentError, NonFiniteError, ShapeError

_INT64_MAX = 2**63 - 1

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
        indices = host_array(self.indices, "indices", kinds="iu")
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) > _INT64_MAX):
            raise InvalidArgumentError(
                f"indices must be row numbers in [0, 2**63), got values in "
                f"[{int(indices.min())}, {int(indices.max())}]",
                "indices",
            )
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        weights = host_array(self.weights, "weights", kinds="fiu", dtype=np.float64)
        if not np.isfinite(weights).all():
            raise NonFiniteError("weights must be finite, got NaN or infinity", "weights")
        if indices.ndim != 1 or indices.shape != weights.shape:
            raise ShapeError(
                f"weights must be 1-D like indices {indices.shape}, got {weights.shape}",
                "weights",
            )
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "p", check_positive(self.p, "p"))

    def __len__(self) -> int:
        return int(self.indices.size)

    def __repr__(self) -> str:
        return (
            f"Coreset(m={self.indices.size}, distinct={np.unique(self.indices).size}, "
            f"p={self.p:g}, method={self.method!r})"
        )

    def norms(self, A: Any, xs: Any) -> Float64Array:  # noqa: N803 (the field's name)
        """``||Ax||_{p,S,w} = (sum_j weights[j] |a_{indices[j]}^T x|^p)^{1/p}`` per column."""
        array = self._rows_of(A)
        cols = _directions(xs, array.shape[1])
        return _lp_norms(array[self.indices] @ cols, self.weights, self.p)

    def distortion(self, A: Any, xs: Any) -> float:  # noqa: N803 (the field's name)
        """The smallest ``eps`` with ``(1 - eps) ||Ax||_p <= ||Ax||_{p,S,w} <= (1 + eps)
        ||Ax||_p`` for every column ``x`` of ``xs``: ``max_x | ||Ax||_{p,S,w} / ||Ax||_p - 1 |``.

        Columns with ``Ax = 0`` are skipped. ``xs`` has shape ``(d,)`` or ``(d, t)``.
        """
        array = self._rows_of(A)
        cols = _directions(xs, array.shape[1])
        values = np.abs(array @ cols)
        # Both sums scaled by the column's largest |a^T x|, so that their ratio, and not the
        # norms (which overflow for an extreme p), is raised to 1/p.
        top = values.max(axis=0, initial=0.0)
        kept = (top > 0) & np.isfinite(top)
        if not kept.any():
            return 0.0
        scaled = values[:, kept] / top[kept]
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            full = (scaled**self.p).sum(axis=0)
            ours = self.weights @ scaled[self.indices] ** self.p
            ratio = (ours / full) ** (1.0 / self.p)
        return float(np.max(np.abs(ratio - 1.0)))

    def _rows_of(self, A: Any, argument: str = "A") -> Float64Array:  # noqa: N803 (the field's name)
        """``A`` checked, and holding every row the coreset names."""
        array = checked_matrix(A, argument)
        if not np.isfinite(array).all():
            raise NonFiniteError(f"{argument} must be finite, got NaN or infinity", argument)
        if self.indices.size and int(self.indices.max()) >= array.shape[0]:
            raise ShapeError(
                f"{argument} must have the {int(self.indices.max()) + 1} rows the coreset's "
                f"indices reach, got shape {array.shape}",
                argument,
            )
        return array


def _lp_norms(values: Float64Array, weights: Float64Array, p: float) -> Float64Array:
    """``(sum_i weights[i] |values[i, t]|^p)^(1/p)`` per column, scaled by the column's
    largest magnitude first, so that a large ``p`` or large values do not overflow."""
    magnitude = np.abs(values)
    top = magnitude.max(axis=0, initial=0.0)
    scale = np.where((top > 0) & np.isfinite(top), top, 1.0)
    with np.errstate(under="ignore"):
        scaled = (weights @ (magnitude / scale) ** p) ** (1.0 / p)
    result: Float64Array = scale * scaled
    return result


def _directions(xs: Any, d: int) -> Float64Array:
    cols = host_array(xs, "xs", kinds="fiu", dtype=np.float64)
    if cols.ndim == 1:
        cols = cols[:, None]
    if cols.ndim != 2 or cols.shape[0] != d:
        raise ShapeError(f"xs must have shape ({d},) or ({d}, t), got {cols.shape}", "xs")
    return cols
