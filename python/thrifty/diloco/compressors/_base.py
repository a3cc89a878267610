"""The compressor protocol and the payload checks every compressor shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from thrifty._checks import check_int
from thrifty._extras import require
from thrifty.errors import DTypeError, ShapeError

if TYPE_CHECKING:
    import torch


def _check_x(x: object) -> None:
    import torch

    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"x must be a torch.Tensor, got {type(x).__name__}", "x")
    if x.dtype != torch.float32:
        raise DTypeError(f"x must be float32, got {x.dtype}", "x")
    if x.dim() != 1:
        raise ShapeError(f"x must be flat (1-D), got shape {tuple(x.shape)}", "x")


def _check_payload(payload: object, expected: int) -> None:
    import torch

    if not isinstance(payload, torch.Tensor):
        raise DTypeError(f"payload must be a torch.Tensor, got {type(payload).__name__}", "payload")
    if payload.dtype != torch.uint8:
        raise DTypeError(f"payload must be uint8, got {payload.dtype}", "payload")
    if payload.dim() != 1 or payload.numel() != expected:
        raise ShapeError(
            f"payload must be 1-D with {expected} bytes, got shape {tuple(payload.shape)}",
            "payload",
        )


def _reinterpret(data: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """View bytes as ``dtype``, copying first when the slice is not aligned for it."""
    import torch

    itemsize = torch.empty((), dtype=dtype).element_size()
    if data.numel() == 0:
        # An empty tensor may carry any stride, which view() refuses.
        return torch.empty(0, dtype=dtype, device=data.device)
    if data.storage_offset() % itemsize or not data.is_contiguous():
        data = data.clone()
    return data.view(dtype)


class Compressor(ABC):
    """A lossy map from a flat float32 tensor to a fixed-size ``uint8`` payload and back.

    Subclasses set ``name`` and ``shared_support`` and implement :meth:`payload_bytes`,
    :meth:`encode` and :meth:`decode`; :meth:`compress` composes the last two. Constructing
    one needs torch (``pip install 'thrifty[torch]'``); importing this module does not.

    Attributes
    ----------
    name : str
        A short label such as ``"topk(0.01)"``, for logs and benchmark tables.
    shared_support : bool
        Whether every worker's payload covers the same coordinates for the same ``seed``, so
        that payload values could be summed directly.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import Compressor, TopK
    >>> c: Compressor = TopK(0.25)
    >>> x = torch.tensor([1.0, -4.0, 2.0, 0.5])
    >>> c.compress(x, seed=0).tolist()
    [0.0, -4.0, 0.0, 0.0]
    """

    name: str
    shared_support: bool = False

    def __init__(self) -> None:
        require("torch")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abstractmethod
    def payload_bytes(self, numel: int) -> int:
        """The exact size in bytes of :meth:`encode`'s output for ``numel`` values.

        Parameters
        ----------
        numel
            The length of the flat vector.

        Returns
        -------
        int
            The payload size; it depends on ``numel`` only.

        Examples
        --------
        >>> from thrifty.diloco.compressors import TopK
        >>> TopK(0.01).payload_bytes(1000)  # 10 int32 indices and 10 float32 values
        80
        """

    @abstractmethod
    def encode(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        """Compress a flat float32 tensor to its payload.

        Parameters
        ----------
        x
            A 1-D float32 tensor, on any device.
        seed
            An integer in ``[0, 2**64)`` every worker passes identically for the same
            exchange.

        Returns
        -------
        torch.Tensor
            A 1-D ``uint8`` tensor of ``payload_bytes(x.numel())`` bytes on ``x``'s device.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import BlockQuantizer
        >>> BlockQuantizer("fp4").encode(torch.ones(5), seed=0).shape
        torch.Size([8])
        """

    @abstractmethod
    def decode(self, payload: torch.Tensor, numel: int, *, seed: int) -> torch.Tensor:
        """Expand a payload back to a flat float32 tensor of ``numel`` values.

        Parameters
        ----------
        payload
            What :meth:`encode` returned (any worker's), 1-D ``uint8``.
        numel
            The length of the vector that was encoded.
        seed
            The ``seed`` the payload was encoded with.

        Returns
        -------
        torch.Tensor
            A float32 tensor on the payload's device, zero where nothing was sent.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import TopK
        >>> c = TopK(0.5)
        >>> c.decode(c.encode(torch.tensor([3.0, 0.0, -1.0]), seed=0), 3, seed=0).tolist()
        [3.0, 0.0, -1.0]
        """

    def delta(self, numel: int) -> float:
        """A lower bound on the contraction ``delta`` for vectors of ``numel`` values.

        ``||C(x) - x||**2 <= (1 - delta) ||x||**2`` for every ``x`` (up to float32 rounding;
        for seeded compressors, in expectation over the seed). The base class returns 0,
        which promises nothing; error feedback such as :class:`EControl` takes its ``eta``
        of the order of ``delta``.

        Examples
        --------
        >>> from thrifty.diloco.compressors import TopK
        >>> TopK(0.01).delta(1000)
        0.01
        """
        check_int(numel, "numel", minimum=0)
        return 0.0

    def compress(self, x: torch.Tensor, *, seed: int) -> torch.Tensor:
        """``decode(encode(x, seed=seed), x.numel(), seed=seed)``: what the receivers see.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import BlockQuantizer
        >>> BlockQuantizer("fp4").compress(torch.tensor([6.0, 2.9, -0.2]), seed=0).tolist()
        [6.0, 3.0, -0.0]
        """
        return self.decode(self.encode(x, seed=seed), x.numel(), seed=seed)
