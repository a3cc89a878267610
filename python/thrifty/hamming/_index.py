"""BinaryIndex: a flat, exact Hamming index over packed codes with stable external ids."""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from thrifty.errors import DTypeError, InvalidArgumentError, ShapeError
from thrifty.hamming._binary import pack, topk
from thrifty.hamming._inputs import UInt8Array, same_width
from thrifty.hamming._inputs import codes as as_codes

Int32Array = np.ndarray[Any, np.dtype[np.int32]]
Int64Array = np.ndarray[Any, np.dtype[np.int64]]

_FORMAT = 1  # version of the file layout written by BinaryIndex.save


def _codes_or_bits(x: Any, argument: str) -> UInt8Array:
    """uint8 arrays are packed codes; bool arrays are bits, packed here."""
    if str(getattr(x, "dtype", "")) in ("bool", "torch.bool"):
        return pack(x)
    return as_codes(x, argument)


def _as_ids(ids: Any, count: int) -> Int64Array:
    array = np.asarray(ids)
    if array.dtype.kind not in "iu":
        raise DTypeError(f"ids must be integers, got dtype {array.dtype}", "ids")
    if array.shape != (count,):
        raise ShapeError(f"ids must have shape ({count},), one per code, got {array.shape}", "ids")
    if count and (int(array.min()) < 0 or int(array.max()) > 2**63 - 1):
        raise InvalidArgumentError("ids must lie in [0, 2**63)", "ids")
    out = array.astype(np.int64)
    if np.unique(out).size != count:
        raise InvalidArgumentError("ids must be unique, got repeated ids", "ids")
    return out


class BinaryIndex:
    """An exact Hamming index over packed codes, with ids that survive removals.

    Every search scans all stored codes with the CPU popcount kernel of :func:`topk`, so
    results are exact. Each code has an external id (``int64``, ``>= 0``): by default
    0, 1, 2, ... in insertion order, never reused, or ids of your choosing. Removing codes
    leaves the other ids unchanged.

    Parameters
    ----------
    codes : uint8 array or tensor of shape (n, bytes), or bool array of shape (n, bits)
        uint8 input is taken as packed codes; bool input as bits, packed with :func:`pack`.
        An ``(0, bytes)`` array makes an empty index of that width.
    ids : array of int, shape (n,), optional
        Unique ids for the codes; the default numbers them from 0.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import hamming
    >>> index = hamming.BinaryIndex(np.array([[0b0000_0000], [0b1111_1111]], np.uint8))
    >>> index.add(np.array([[0b0000_0001]], np.uint8)).tolist()
    [2]
    >>> index.remove([0])
    >>> distances, ids = index.search(np.array([[0b0000_0000]], np.uint8), 2)
    >>> distances.tolist(), ids.tolist()
    ([[1, 8]], [[2, 1]])
    """

    def __init__(self, codes: Any, *, ids: Any = None) -> None:
        stored = _codes_or_bits(codes, "codes")
        count = len(stored)
        self._codes: UInt8Array = np.array(stored, dtype=np.uint8, order="C")
        self._ids: Int64Array = (
            np.arange(count, dtype=np.int64) if ids is None else _as_ids(ids, count)
        )
        self._next_id = int(self._ids.max()) + 1 if count else 0

    @property
    def bytes_per_code(self) -> int:
        """Bytes in each stored code."""
        return int(self._codes.shape[1])

    @property
    def ids(self) -> Int64Array:
        """The ids of the stored codes, in storage order (a copy)."""
        ids: Int64Array = self._ids.copy()
        return ids

    @property
    def codes(self) -> UInt8Array:
        """The stored codes, in storage order (a read-only view)."""
        view: UInt8Array = self._codes.view()
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"BinaryIndex({len(self)} codes of {self.bytes_per_code} bytes)"

    def add(self, codes: Any, *, ids: Any = None) -> Int64Array:
        """Append codes (packed uint8, or bool bits); returns their ids.

        Without ``ids`` the new codes are numbered on from the largest id ever held. Given
        ids must be unique and not already in the index.
        """
        new = _codes_or_bits(codes, "codes")
        same_width(("the index", self._codes), ("codes", new))
        count = len(new)
        if ids is None:
            new_ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        else:
            new_ids = _as_ids(ids, count)
            taken = new_ids[np.isin(new_ids, self._ids)]
            if taken.size:
                raise InvalidArgumentError(
                    f"ids are already in the index: {taken[:5].tolist()}", "ids"
                )
        self._codes = np.concatenate([self._codes, new])
        self._ids = np.concatenate([self._ids, new_ids])
        if count:
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        added: Int64Array = new_ids.copy()
        return added

    def remove(self, ids: Any) -> None:
        """Remove the codes with these ids; every id must be in the index."""
        wanted = np.unique(np.asarray(ids).reshape(-1))
        if wanted.size and wanted.dtype.kind not in "iu":
            raise DTypeError(f"ids must be integers, got dtype {wanted.dtype}", "ids")
        missing = wanted[~np.isin(wanted, self._ids)]
        if missing.size:
            raise InvalidArgumentError(f"ids are not in the index: {missing[:5].tolist()}", "ids")
        keep = ~np.isin(self._ids, wanted)
        self._codes = self._codes[keep]
        self._ids = self._ids[keep]

    def search(self, queries: Any, k: int) -> tuple[Int32Array, Int64Array]:
        """The ``k`` stored codes nearest to each query: ``(distances, ids)``.

        Rows are ordered by (distance, storage position), the storage position being the
        insertion order, so results are deterministic. With fewer than ``k`` codes stored
        every code is returned: the rows have ``min(k, len(index))`` columns.

        Parameters
        ----------
        queries : uint8 array of shape (nq, bytes), or bool array of shape (nq, bits)
        k : int

        Returns
        -------
        distances : numpy.ndarray of int32, shape (nq, min(k, len(index)))
        ids : numpy.ndarray of int64, shape (nq, min(k, len(index)))
        """
        q = _codes_or_bits(queries, "queries")
        same_width(("the index", self._codes), ("queries", q))
        if len(self) == 0:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
                raise InvalidArgumentError(f"k must be a positive integer, got {k!r}", "k")
            return np.empty((len(q), 0), np.int32), np.empty((len(q), 0), np.int64)
        distances, positions = topk(q, self._codes, k)
        return distances, self._ids[positions]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (a NumPy ``.npz`` file, exactly at that path)."""
        with open(path, "wb") as file:
            np.savez(
                file,
                format=np.int64(_FORMAT),
                codes=self._codes,
                ids=self._ids,
                next_id=np.int64(self._next_id),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BinaryIndex:
        """Read an index written by :meth:`save`."""
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise InvalidArgumentError(
                f"{os.fspath(path)!s} is not a BinaryIndex file: {error}", "path"
            ) from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise InvalidArgumentError(
                f"{os.fspath(path)!s} is not a BinaryIndex file (a bare .npy array)", "path"
            )
        with archive as data:
            names = set(data.files)
            if not {"format", "codes", "ids", "next_id"} <= names:
                raise InvalidArgumentError(
                    f"{os.fspath(path)!s} is not a BinaryIndex file (has {sorted(names)})",
                    "path",
                )
            if int(data["format"]) != _FORMAT:
                raise InvalidArgumentError(
                    f"{os.fspath(path)!s} has format {int(data['format'])}, "
                    f"this version reads {_FORMAT}",
                    "path",
                )
            index = cls(data["codes"], ids=data["ids"])
            index._next_id = max(index._next_id, int(data["next_id"]))
        return index
