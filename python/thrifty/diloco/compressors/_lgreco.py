"""L-GreCo as a compressor: a level per layer out of several compressors, re-planned."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from thrifty._checks import check_int, check_positive, check_seed
from thrifty.diloco.compressors._base import Compressor, _check_payload, _check_x
from thrifty.errors import InvalidArgumentError, ShapeError
from thrifty.schedule._lgreco import error_table, layer_seed, lgreco

if TYPE_CHECKING:
    import torch

Int64Array = np.ndarray[Any, np.dtype[np.int64]]
Float64Array = np.ndarray[Any, np.dtype[np.float64]]


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
    ``l`` is compressed with a seed derived from ``seed`` and ``l``, the one :meth:`measure`
    (and :func:`thrifty.schedule.lgreco_tables`) compress it with. ``delta`` is the least
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
        pieces = torch.split(x, list(layers))
        errors: Float64Array = error_table(pieces, self.candidates, seed=check_seed(seed))
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
        seed = check_seed(seed)
        layers, levels = self._bound(x.numel())
        parts = [
            self.candidates[int(level)].encode(piece, seed=layer_seed(seed, layer))
            for layer, (piece, level) in enumerate(
                zip(torch.split(x, list(layers)), levels, strict=True)
            )
        ]
        return torch.cat(parts)

    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        import torch

        seed = check_seed(seed)
        sizes = self._payload_sizes(check_int(numel, "numel", minimum=0))
        _check_payload(payload, sum(sizes))
        layers, levels = self._bound(numel)
        pieces = torch.split(payload, sizes)
        return torch.cat(
            [
                self.candidates[int(level)].decode(piece, size, seed=layer_seed(seed, layer))
                for layer, (piece, size, level) in enumerate(
                    zip(pieces, layers, levels, strict=True)
                )
            ]
        )
