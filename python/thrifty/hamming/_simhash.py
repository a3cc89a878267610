"""Random-hyperplane codes (SimHash) from float embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty._arrays import host_array, is_cupy_array, is_gpu_array
from thrifty._checks import check_int, check_seed
from thrifty._extras import require
from thrifty.errors import DTypeError, NonFiniteError, ShapeError
from thrifty.hamming._binary import pack
from thrifty.hamming._inputs import UInt8Array

_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # numpy.packbits' bit order


def hyperplanes(dim: int, bits: int, seed: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The ``(dim, bits)`` Gaussian hyperplanes of :func:`simhash`, drawn from ``seed``.

    NumPy's PCG64 and its normal sampler give the same values on every platform.
    """
    return np.random.default_rng(seed).standard_normal((dim, bits))


# Hamming distances are int32: a code may not have more bits than they can count.
_MAX_BITS = 2**31 - 1


def _check(bits: Any, seed: Any) -> tuple[int, int]:
    return check_int(bits, "bits", minimum=1, maximum=_MAX_BITS), check_seed(seed)


def simhash(embeddings: Any, bits: int, *, seed: int = 0) -> Any:
    """Packed random-hyperplane codes: near embeddings get codes at small Hamming distance.

    Bit ``j`` of row ``i`` is set when ``<embeddings[i], r_j> > 0``, for ``bits`` Gaussian
    hyperplanes ``r_j`` drawn from ``seed`` (Charikar, STOC 2002). Two rows at angle
    ``theta`` differ in each bit with probability ``theta / pi``, so the expected Hamming
    distance is ``bits * theta / pi``. Rows need not be normalised.

    On the CPU the projections are computed in float64. CuPy arrays and CUDA tensors are
    projected on their device (in float64 for float64 input, else float32) and packed there,
    so their codes may differ from the CPU's only for projections within rounding of zero.

    Parameters
    ----------
    embeddings : float array or tensor, shape (n, dim)
        Finite values.
    bits : int
        Bits per code; each code takes ``ceil(bits / 8)`` bytes, padded with zero bits.
    seed : int
        Same seed, same hyperplanes: codes computed in separate runs are comparable.

    Returns
    -------
    numpy.ndarray of uint8, shape (n, ceil(bits / 8))
        On the device of the input (a CuPy array or CUDA tensor) for GPU input.

    Examples
    --------
    >>> import numpy as np
    >>> from thrifty import hamming
    >>> x = np.random.default_rng(0).standard_normal((3, 16))
    >>> x[1] = 2.0 * x[0] + 0.01  # nearly the same direction as row 0
    >>> codes = hamming.simhash(x, 64, seed=1)
    >>> codes.shape, codes.dtype
    ((3, 8), dtype('uint8'))
    >>> d = hamming.cdist(codes, codes)
    >>> bool(d[0, 1] < d[0, 2])
    True
    """
    bits, seed = _check(bits, seed)
    if is_gpu_array(embeddings):
        return _simhash_gpu(embeddings, bits, seed)
    x = host_array(embeddings, "embeddings", kinds="f", ndim=2)
    if not np.isfinite(x).all():
        raise NonFiniteError("embeddings must be finite, got NaN or infinity", "embeddings")
    planes = hyperplanes(int(x.shape[1]), bits, seed)
    codes: UInt8Array = pack(x.astype(np.float64, copy=False) @ planes > 0)
    return codes


def _simhash_gpu(x: Any, bits: int, seed: int) -> Any:
    if x.ndim != 2:
        raise ShapeError(f"embeddings must be 2-D, got shape {tuple(x.shape)}", "embeddings")
    planes = hyperplanes(int(x.shape[1]), bits, seed)
    pad = -bits % 8
    if is_cupy_array(x):
        cupy = require("cupy")
        if x.dtype.kind != "f":
            raise DTypeError(f"embeddings must have a floating dtype, got {x.dtype}", "embeddings")
        dtype = cupy.float64 if x.dtype == cupy.float64 else cupy.float32
        x = x.astype(dtype, copy=False)
        if not bool(cupy.isfinite(x).all()):
            raise NonFiniteError("embeddings must be finite, got NaN or infinity", "embeddings")
        signs = (x @ cupy.asarray(planes, dtype=dtype)) > 0
        signs = cupy.pad(signs, ((0, 0), (0, pad))).reshape(len(x), -1, 8)
        weights = cupy.asarray(_WEIGHTS, dtype=cupy.uint8)
        return (signs.astype(cupy.uint8) * weights).sum(axis=2, dtype=cupy.uint8)
    torch = require("torch")
    if not x.is_floating_point():
        raise DTypeError(f"embeddings must have a floating dtype, got {x.dtype}", "embeddings")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.detach().to(dtype)
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError("embeddings must be finite, got NaN or infinity", "embeddings")
    signs = (x @ torch.as_tensor(planes, dtype=dtype, device=x.device)) > 0
    signs = torch.nn.functional.pad(signs.to(torch.uint8), (0, pad)).reshape(len(x), -1, 8)
    weights = torch.tensor(_WEIGHTS, dtype=torch.uint8, device=x.device)
    return (signs * weights).sum(dim=2, dtype=torch.uint8)
