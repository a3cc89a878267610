"""The exceptions thrifty raises.

Every error derives from :class:`ThriftyError`, and also from the standard exception that
fits (a bad shape is a ``ValueError``, a wrong dtype a ``TypeError``), so that code written
against either keeps working. Errors about an argument carry its name in ``.argument``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CollectiveAborted",
    "CollectiveError",
    "CollectiveTimeout",
    "DTypeError",
    "DeviceError",
    "InternalError",
    "InvalidArgumentError",
    "MissingExtraError",
    "NonFiniteError",
    "PeerLost",
    "ShapeError",
    "ThriftyError",
]


class ThriftyError(Exception):
    """Base class of every error thrifty raises.

    Examples
    --------
    >>> import numpy as np, thrifty
    >>> from thrifty import steps
    >>> try:
    ...     steps.optimal_path(np.zeros((3, 4)), 2)
    ... except thrifty.ThriftyError as error:
    ...     print(error.argument)
    cost
    """

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class InvalidArgumentError(ThriftyError, ValueError):
    """An argument has a value outside its domain (``k > n``, a negative cost)."""


class ShapeError(InvalidArgumentError):
    """An array argument has the wrong shape."""


class NonFiniteError(InvalidArgumentError):
    """An array argument holds NaN or infinity where finite values are required."""


class DTypeError(ThriftyError, TypeError):
    """An array argument has the wrong dtype or memory layout, or is not an array."""


class MissingExtraError(ThriftyError, ImportError):
    """An optional dependency is needed; the message names the extra that installs it."""


class DeviceError(ThriftyError, RuntimeError):
    """A GPU array was given where no CUDA path exists, or CUDA is unusable."""


class InternalError(ThriftyError, RuntimeError):
    """A broken invariant inside thrifty (a caught Rust panic included): a bug to report."""


class CollectiveError(ThriftyError, RuntimeError):
    """A collective operation failed; the caller's buffer is left as it was before the call."""


class PeerLost(CollectiveError):  # noqa: N818 (a public name the API fixes)
    """A peer, the coordinator, or the link to one was lost during a collective.

    The input buffer has been restored exactly. Call ``update_topology()`` and retry: the
    survivors go on with the smaller world.
    """


class CollectiveTimeout(CollectiveError, TimeoutError):  # noqa: N818 (public API name)
    """A blocking collective call ran past its deadline (``timeout_s``)."""


class AuthenticationError(CollectiveError, PermissionError):
    """A connection was refused: the other side does not hold the same shared secret."""


class CollectiveAborted(CollectiveError):  # noqa: N818 (public API name)
    """A collective was aborted for a reason a retry cannot fix.

    Peers called different collectives (or the same one with different shapes), or a peer
    rejected its own input (non-finite values under quantization).
    """
