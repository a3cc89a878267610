"""L-GreCo: one compression level per layer, smallest total size within an error budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from thrifty import _native
from thrifty._arrays import host_array, is_torch_tensor
from thrifty._checks import check_int, check_seed
from thrifty.errors import DTypeError, InvalidArgumentError, NonFiniteError

if TYPE_CHECKING:
    import torch

Int64Array = np.ndarray[Any, np.dtype[np.int64]]
Float64Array = np.ndarray[Any, np.dtype[np.float64]]

#: Buckets of the error budget when errors are floats: each layer's error is rounded up by
#: less than ``budget / DEFAULT_BUCKETS``, and the DP costs ``L * C * (buckets + 1)`` steps.
DEFAULT_BUCKETS = 10_000


_SEED_MASK = (1 << 64) - 1


@runtime_checkable
class LevelCompressor(Protocol):
    """What a candidate level must offer for its error and size to be measured: a lossy
    ``compress`` of a flat float32 tensor and the size of its payload (the compressors of
    :mod:`thrifty.diloco.compressors` all do)."""

    def compress(self, x: torch.Tensor, *, seed: int) -> torch.Tensor: ...

    def payload_bytes(self, numel: int) -> int: ...


def layer_seed(seed: int, layer: int) -> int:
    """The seed layer ``layer`` is compressed with, for a table or an exchange seeded ``seed``.

    Each layer gets its own draw (a seeded compressor such as random-k would otherwise pick
    the same offsets in every layer of a size); an odd multiplier keeps distinct layers
    distinct modulo ``2**64``.

    Examples
    --------
    >>> from thrifty.schedule._lgreco import layer_seed
    >>> layer_seed(0, 0) != layer_seed(0, 1) and 0 <= layer_seed(2**64 - 1, 3) < 2**64
    True
    """
    return (seed + (layer + 1) * 0x9E3779B97F4A7C15) & _SEED_MASK


def error_table(
    pieces: Sequence[torch.Tensor], candidates: Sequence[LevelCompressor], *, seed: int
) -> Float64Array:
    """``errors[l, c] = ||x_l - C_c(x_l)||^2`` for flat float32 layers ``x_l``, each
    compressed with :func:`layer_seed` of ``seed`` and ``l``.

    The table fills on the layers' device and is copied to the host once, without a host
    sync per entry. Non-finite layers give NaN or infinite entries.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import TopK
    >>> from thrifty.schedule._lgreco import error_table
    >>> error_table([torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0])], [TopK(0.5)], seed=0)
    array([[1.],
           [4.]])
    """
    import torch

    device = pieces[0].device if pieces else torch.device("cpu")
    table = torch.zeros(len(pieces), len(candidates), dtype=torch.float64, device=device)
    for layer, piece in enumerate(pieces):
        mixed = layer_seed(seed, layer)
        for level, compressor in enumerate(candidates):
            residual = compressor.compress(piece, seed=mixed) - piece
            table[layer, level] = residual.double().square().sum()
    errors: Float64Array = table.cpu().numpy()
    return errors


def _checked_budget(budget: Any) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"budget must be a number >= 0, got {budget!r}", "budget")
    return float(budget)


def lgreco(errors: Any, sizes: Any, budget: float, *, buckets: int | None = None) -> Int64Array:
    """Compression level per layer with the least total size, summed error within ``budget``.

    L-GreCo (Markov et al., arXiv 2210.17357) casts layerwise gradient compression as a
    multiple-choice knapsack: layer ``l`` compressed at candidate level ``c`` (a bit width,
    a top-k ``k``, a rank) costs ``sizes[l, c]`` bytes and adds ``errors[l, c]`` to the total
    error; the answer minimises ``sum_l sizes[l, level[l]]`` subject to
    ``sum_l errors[l, level[l]] <= budget``. It is solved exactly by dynamic programming over
    a discretised budget. :class:`thrifty.diloco.compressors.LGreCo` uses it to compress
    DiLoCo's pseudo-gradients and DDP's gradient buckets layer by layer.

    Parameters
    ----------
    errors : array_like, shape (L, C)
        Error of each layer at each candidate level (e.g. ``||g - C(g)||^2``), finite, >= 0.
        An integer array is used as it is (no rounding), and the answer is exactly optimal.
    sizes : array_like, shape (L, C)
        Compressed size of each layer at each candidate level, finite, >= 0.
    budget : float
        Bound on the summed error, >= 0.
    buckets : int, optional
        Discretise the budget into this many units of ``budget / buckets`` and round every
        error *up* to a whole number of units. Every answer is then truly feasible, and
        optimal for the rounded problem: its size is at most the optimum under the budget
        ``budget - L * budget / buckets``. The default is exact integer DP for integer
        ``errors`` and ``DEFAULT_BUCKETS`` (10 000, our choice; the paper fixes none) for
        floats.

    Returns
    -------
    numpy.ndarray of int64, shape (L,)
        The level of every layer. Among answers of equal total size the one with the smaller
        total error is returned, then the one with lower level indices in earlier layers.

    Raises
    ------
    InvalidArgumentError
        ``budget`` is infeasible (below the summed least error of every layer, or infeasible
        once errors are rounded up: use more ``buckets``), or a DP table above 2^28 cells
        (``L x (units + 1)``: pass fewer ``buckets``); negative values in a table.
    NonFiniteError, ShapeError, DTypeError
        NaN or infinity, mismatched shapes, non-numeric tables; the error names the argument.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import schedule
    >>> errors = np.array([[0, 4, 9], [0, 1, 3]])  # level 0 lossless, level 2 smallest
    >>> sizes = np.array([[32.0, 8.0, 2.0], [32.0, 8.0, 2.0]])
    >>> schedule.lgreco(errors, sizes, 7).tolist()
    [1, 2]
    """
    error_table = host_array(errors, "errors", kinds="fiub", ndim=2)
    size_table = host_array(sizes, "sizes", kinds="fiub", ndim=2, dtype=np.float64)
    value = _checked_budget(budget)
    if buckets is not None:
        # Counts travel to Rust as usize: anything larger is refused here, by name.
        buckets = check_int(buckets, "buckets", minimum=1, maximum=2**63 - 1)
    if buckets is None and error_table.dtype.kind == "f":
        buckets = DEFAULT_BUCKETS
    return _native.schedule_lgreco(
        np.ascontiguousarray(error_table, dtype=np.float64),
        size_table,
        value,
        None if buckets is None else int(buckets),
    )


def lgreco_tables(
    tensors: Sequence[torch.Tensor], candidates: Sequence[LevelCompressor], *, seed: int = 0
) -> tuple[Float64Array, Float64Array]:
    """The (errors, sizes) tables of :func:`lgreco` for per-layer tensors and compressors.

    ``errors[l, c] = ||g_l - C_c(g_l)||^2`` is the squared error of compressing layer ``l``'s
    flattened tensor (as float32) with candidate ``c``, and ``sizes[l, c]`` is the payload
    size in bytes, ``C_c.payload_bytes(g_l.numel())``: the tables L-GreCo (arXiv 2210.17357)
    minimises over, for the compressors of :mod:`thrifty.diloco.compressors`. The errors
    are those :meth:`thrifty.diloco.compressors.LGreCo.measure` gives for the layers laid
    end to end, with the same ``seed``.

    Parameters
    ----------
    tensors : sequence of torch.Tensor
        One tensor per layer (a gradient, or a DiLoCo pseudo-gradient), finite.
    candidates : sequence of compressors
        The candidate levels, e.g. ``[TopK(0.01), TopK(0.1), BlockQuantizer("int8")]``:
        anything with ``compress(x, *, seed)`` and ``payload_bytes(numel)``.
    seed : int
        An integer in ``[0, 2**64)``; layer ``l`` is compressed with a seed derived from it
        and ``l``, as :class:`~thrifty.diloco.compressors.LGreCo` compresses its layers (it
        matters for seeded compressors such as ``RandomK`` only).

    Returns
    -------
    errors, sizes : numpy.ndarray of float64, shape (len(tensors), len(candidates))

    Examples
    --------
    >>> import torch
    >>> from thrifty import schedule
    >>> from thrifty.diloco.compressors import BlockQuantizer, TopK
    >>> layers = [torch.linspace(-1, 1, 256), torch.ones(64)]
    >>> errors, sizes = schedule.lgreco_tables(layers, [TopK(0.5), BlockQuantizer("int8")])
    >>> sizes.tolist()
    [[1024.0, 272.0], [256.0, 68.0]]
    >>> schedule.lgreco(errors, sizes, float(errors[:, 1].sum())).tolist()
    [1, 1]
    """
    seed = check_seed(seed)
    if (
        isinstance(candidates, (str, bytes))
        or not candidates
        or not all(isinstance(c, LevelCompressor) for c in candidates)
    ):
        raise InvalidArgumentError(
            "candidates must be a non-empty sequence of compressors such as "
            f"thrifty.diloco.compressors.TopK, got {candidates!r}",
            "candidates",
        )
    pieces = []
    for layer, tensor in enumerate(tensors):
        if not is_torch_tensor(tensor):
            raise DTypeError(
                f"tensors[{layer}] must be a torch tensor, got {type(tensor).__name__}", "tensors"
            )
        flat = tensor.detach().reshape(-1).float()
        if not bool(flat.isfinite().all()):
            raise NonFiniteError(f"tensors[{layer}] holds NaN or infinity", "tensors")
        pieces.append(flat)
    sizes = np.array(
        [[float(c.payload_bytes(flat.numel())) for c in candidates] for flat in pieces]
    ).reshape(len(pieces), len(candidates))
    return error_table(pieces, candidates, seed=seed), sizes
