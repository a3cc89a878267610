"""Error feedback: what compression dropped is sent later, so compressed training converges."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from thrifty._checks import check_int, check_positive
from thrifty.diloco.compressors._base import Compressor
from thrifty.errors import InvalidArgumentError, ShapeError

if TYPE_CHECKING:
    import torch


class Feedback(ABC):
    """The interface both error feedback wrappers share, so training code can take either.

    A round goes: ``v = outgoing(g, state)``; every worker sends ``encode(v)``; once the
    exchange has succeeded, ``estimate = commit(g, state, sent, mean_sent)`` with ``sent`` this
    worker's decoded payload and ``mean_sent`` the mean of all workers' decoded payloads. A
    failed exchange that is retried calls :meth:`outgoing` again with the state untouched.

    :meth:`commit` leaves the state as it was when ``g`` or ``mean_sent`` holds a NaN or an
    infinity (the step an AMP ``GradScaler`` skips), and then returns a non-finite estimate so
    the skip still happens; the check runs on the device, without a host sync.

    Attributes
    ----------
    compressor : Compressor
        What compresses :meth:`outgoing`'s vector.
    name : str
        A short label such as ``"ef(topk(0.01))"``.

    Examples
    --------
    >>> import torch
    >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
    >>> fb = ErrorFeedback(TopK(0.5))
    >>> state = fb.init_state(4, "cpu")
    >>> g = torch.tensor([1.0, 0.1, -2.0, 0.2])
    >>> sent = fb.compressor.compress(fb.outgoing(g, state), seed=0)
    >>> fb.commit(g, state, sent, sent).tolist(), state["error"].tolist()
    ([1.0, 0.0, -2.0, 0.0], [0.0, 0.10000000149011612, 0.0, 0.20000000298023224])
    """

    compressor: Compressor
    name: str

    def __init__(self, compressor: Compressor) -> None:
        if not isinstance(compressor, Compressor):
            raise InvalidArgumentError(
                f"compressor must be a Compressor, got {type(compressor).__name__}", "compressor"
            )
        self.compressor = compressor

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abstractmethod
    def init_state(self, numel: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        """Fresh per-buffer state (float32 zeros of ``numel`` values on ``device``).

        Examples
        --------
        >>> from thrifty.diloco.compressors import EControl, TopK
        >>> sorted(EControl(TopK(0.1), eta=0.1).init_state(3, "cpu"))
        ['error', 'h_local', 'h_mean']
        """

    @abstractmethod
    def outgoing(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The vector to compress and send this round; the state is not changed.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
        >>> fb = ErrorFeedback(TopK(0.5))
        >>> fb.outgoing(torch.ones(2), fb.init_state(2, "cpu")).tolist()
        [1.0, 1.0]
        """

    @abstractmethod
    def commit(
        self,
        g: torch.Tensor,
        state: dict[str, torch.Tensor],
        sent: torch.Tensor,
        mean_sent: torch.Tensor,
    ) -> torch.Tensor:
        """Update the state in place after a successful exchange; return the mean estimate.

        Parameters
        ----------
        g
            The same local vector (gradient or pseudo-gradient) given to :meth:`outgoing`.
        state
            This buffer's state, from :meth:`init_state`.
        sent
            This worker's own payload, decoded.
        mean_sent
            The mean over workers of their decoded payloads.

        Returns
        -------
        torch.Tensor
            A new tensor: the estimate of the mean of ``g`` over workers to apply.

        Examples
        --------
        >>> import torch
        >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
        >>> fb = ErrorFeedback(TopK(0.5))
        >>> state = fb.init_state(2, "cpu")
        >>> g = torch.tensor([3.0, 1.0])
        >>> sent = fb.compressor.compress(fb.outgoing(g, state), seed=0)
        >>> fb.commit(g, state, sent, sent).tolist(), state["error"].tolist()
        ([3.0, 0.0], [0.0, 1.0])
        """

    @staticmethod
    def _check_state(
        g: torch.Tensor, state: dict[str, torch.Tensor], keys: tuple[str, ...]
    ) -> None:
        missing = [key for key in keys if key not in state]
        if missing:
            raise InvalidArgumentError(f"state lacks {missing}: make it with init_state", "state")
        if state[keys[0]].shape != g.shape:
            raise ShapeError(
                f"g must have the state's shape {tuple(state[keys[0]].shape)}, "
                f"got {tuple(g.shape)}",
                "g",
            )

    @staticmethod
    def _finite(*tensors: torch.Tensor) -> torch.Tensor:
        import torch

        flag = torch.isfinite(tensors[0]).all()
        for tensor in tensors[1:]:
            flag = flag & torch.isfinite(tensor).all()
        return flag


class ErrorFeedback(Feedback):
    """Classic error feedback: send ``C(g + e)`` and keep what was dropped, ``e``, for later.

    Seide et al. 2014 ("1-bit SGD") and Karimireddy et al. 2019 (arXiv 1901.09847). The
    state is ``{"error": e}``; :meth:`outgoing` is ``g + e``, and :meth:`commit` sets
    ``e <- (g + e) - sent`` and returns ``mean_sent``. With heterogeneous workers the
    iterates settle near, not at, the optimum (within a distance proportional to the step
    size); :class:`EControl` removes that bias.

    Parameters
    ----------
    compressor
        A contractive compressor, such as :class:`TopK`.

    Examples
    --------
    >>> from thrifty.diloco.compressors import ErrorFeedback, TopK
    >>> ErrorFeedback(TopK(0.01)).name
    'ef(topk(0.01))'
    """

    def __init__(self, compressor: Compressor) -> None:
        super().__init__(compressor)
        self.name = f"ef({compressor.name})"

    def init_state(self, numel: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        import torch

        check_int(numel, "numel", minimum=0)
        return {"error": torch.zeros(numel, dtype=torch.float32, device=device)}

    def outgoing(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_state(g, state, ("error",))
        return g + state["error"]

    def commit(
        self,
        g: torch.Tensor,
        state: dict[str, torch.Tensor],
        sent: torch.Tensor,
        mean_sent: torch.Tensor,
    ) -> torch.Tensor:
        import torch

        self._check_state(g, state, ("error",))
        error = state["error"]
        finite = self._finite(g, mean_sent)
        error.copy_(torch.where(finite, g + error - sent, error))
        return mean_sent.clone()


class EControl(Feedback):
    """EControl: error feedback with a learned gradient shift (arXiv 2311.05645).

    Gao, Islamov and Stich 2023. Each worker keeps an error ``e`` and a shift ``h_local``
    (its running compressed gradient), and all workers share ``h_mean`` (the mean of the
    shifts, identical everywhere because it is built from exchanged values only). A round
    sends ``C(eta e + g - h_local)``; :meth:`commit` then sets
    ``e <- e + g - h_local - sent``, ``h_local <- h_local + sent`` and returns the estimate
    ``h_mean + mean_sent``, which becomes the new ``h_mean``. Because the shifts learn each
    worker's own gradient, EControl converges under data heterogeneity, where plain
    :class:`ErrorFeedback` keeps a bias.

    Parameters
    ----------
    compressor
        A contractive compressor, such as :class:`TopK`.
    eta
        How strongly the accumulated error is fed back, finite and > 0. The paper gives no
        universal default: its analysis takes ``eta`` small, of the order of the compressor's
        contraction ``delta`` (``k / numel`` for :class:`TopK`), and its experiments tune it.
        Start near ``delta``: much larger values diverge (on a quadratic with ``TopK(0.05)``,
        ``eta=0.2`` does while ``eta=0.05`` converges).

    Examples
    --------
    >>> from thrifty.diloco.compressors import EControl, TopK
    >>> EControl(TopK(0.05), eta=0.05).name
    'econtrol(topk(0.05), eta=0.05)'
    """

    def __init__(self, compressor: Compressor, eta: float) -> None:
        super().__init__(compressor)
        self.eta = check_positive(eta, "eta")
        self.name = f"econtrol({compressor.name}, eta={self.eta:g})"

    _KEYS = ("error", "h_local", "h_mean")

    def init_state(self, numel: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        import torch

        check_int(numel, "numel", minimum=0)
        return {key: torch.zeros(numel, dtype=torch.float32, device=device) for key in self._KEYS}

    def outgoing(self, g: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_state(g, state, self._KEYS)
        return self.eta * state["error"] + g - state["h_local"]

    def commit(
        self,
        g: torch.Tensor,
        state: dict[str, torch.Tensor],
        sent: torch.Tensor,
        mean_sent: torch.Tensor,
    ) -> torch.Tensor:
        import torch

        self._check_state(g, state, self._KEYS)
        error, h_local, h_mean = (state[key] for key in self._KEYS)
        finite = self._finite(g, mean_sent)
        estimate = h_mean + mean_sent
        error.copy_(torch.where(finite, error + g - h_local - sent, error))
        h_local.copy_(torch.where(finite, h_local + sent, h_local))
        h_mean.copy_(torch.where(finite, estimate, h_mean))
        return estimate
