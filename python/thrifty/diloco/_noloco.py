"""NoLoCo (arXiv 2506.10911): DiLoCo's outer step without any all-reduce.

Every ``sync_every`` inner steps each worker averages its slow weights ``phi`` and its
progress ``delta = local - phi`` with one random partner (a permutation seeded by the round
number, the same on every worker), then takes a Nesterov-like step towards the pair:
``m <- beta*m + lr*mean(delta) + lr*(mean(phi) - phi)`` and ``phi <- phi + m``, and restarts
its inner steps from ``phi``. No worker ever waits for the whole world.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from thrifty._checks import check_int, check_rate, check_real
from thrifty._extras import require
from thrifty.diloco._diloco import check_training_loop
from thrifty.diloco._flat import flatten, write_back
from thrifty.diloco._stats import CommStats, SyncRecord
from thrifty.diloco._transport import Transport, as_transport, wire_bytes, with_retries
from thrifty.errors import InvalidArgumentError

if TYPE_CHECKING:
    import torch.distributed


class NoLoCo:
    """NoLoCo around any model and inner optimizer: call :meth:`step` after each inner step.

    Parameters
    ----------
    model, inner_optimizer
        As for :class:`~thrifty.diloco.DiLoCo`.
    transport
        A :class:`thrifty.collective.Communicator` (gossip through
        :meth:`~thrifty.collective.Communicator.pair_average`), a
        :class:`~thrifty.collective.TorchDistributed` or a ``torch.distributed`` process
        group (point-to-point sends with the same seeded pairing).
    sync_every
        H, inner steps between two gossip rounds.
    outer_lr
        The outer learning rate (the paper uses values around 0.5-0.7).
    beta
        Momentum of the outer step, in ``[0, 1)``.
    group_size
        Workers averaged together each round (2 in the paper; leftovers join the last
        group).

    Lost peers (thrifty's transport) are survived: the round is redone with the smaller
    world. There is no shared state to hand a newcomer, so the world's membership is the
    one the run started with, minus whoever was lost.

    Examples
    --------
    >>> import torch
    >>> from thrifty import collective, diloco
    >>> model = torch.nn.Linear(4, 1)
    >>> inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    >>> with collective.Coordinator(secret="s") as coordinator:
    ...     with collective.Communicator(coordinator.address, secret="s") as comm:
    ...         comm.connect(); comm.update_topology()
    ...         outer = diloco.NoLoCo(
    ...             model, inner, transport=comm, sync_every=5, outer_lr=0.7, beta=0.5
    ...         )
    ...         for _ in range(10):
    ...             inner.zero_grad()
    ...             model(torch.ones(2, 4)).pow(2).mean().backward()
    ...             inner.step()
    ...             outer.step()
    >>> outer.stats.syncs
    2
    """

    def __init__(
        self,
        model: Any,
        inner_optimizer: Any,
        *,
        transport: Transport | torch.distributed.ProcessGroup,
        sync_every: int,
        outer_lr: float,
        beta: float,
        group_size: int = 2,
    ) -> None:
        torch = require("torch")
        check_training_loop(model, inner_optimizer)
        self.sync_every = check_int(sync_every, "sync_every", minimum=1)
        # The step is an alpha of float32 parameters: a larger one cannot even be applied.
        self.outer_lr = check_rate(outer_lr, "outer_lr")
        self.beta = check_real(beta, "beta", low=0.0, high=1.0, high_open=True)
        self.group_size = check_int(group_size, "group_size", minimum=2, maximum=2**63 - 1)
        self.model = model
        self.inner_optimizer = inner_optimizer
        self.transport = as_transport(transport)
        self._params = [p for p in model.parameters()]
        if not self._params:
            raise InvalidArgumentError("model has no parameters to train", "model")
        self._phi = flatten(self._params)
        self._momentum = torch.zeros_like(self._phi)
        self._step = 0
        self.stats = CommStats()
        # Every worker starts from the same slow weights (the most common, else rank 0's).
        started = time.perf_counter()
        self.transport.sync_state({"phi": self._phi})
        write_back(self._params, self._phi)
        self.stats.waited(time.perf_counter() - started)

    @property
    def inner_steps(self) -> int:
        return self._step

    def step(self) -> None:
        """Count one inner step; every ``sync_every``, one gossip round and outer step."""
        torch = require("torch")
        self._step += 1
        if self._step % self.sync_every:
            return
        round_index = self._step // self.sync_every
        local = flatten(self._params)
        n = self._phi.numel()
        message = torch.cat([self._phi, local - self._phi])

        def gossip() -> list[int]:
            group: list[int] = self.transport.pair_average(
                message, round_index, group_size=self.group_size
            )
            return group

        started = time.perf_counter()
        group, retries = with_retries(self.transport, gossip)
        seconds = time.perf_counter() - started
        self.stats.waited(seconds)
        mean_phi, mean_delta = message[:n], message[n:]
        with torch.no_grad():
            self._momentum.mul_(self.beta).add_(mean_delta, alpha=self.outer_lr)
            self._momentum.add_(mean_phi - self._phi, alpha=self.outer_lr)
            self._phi.add_(self._momentum)
            write_back(self._params, self._phi)
        estimate = message.numel() * 4 * (len(group) - 1)
        self.stats.record(
            SyncRecord(
                step=self._step,
                fragment=0,
                bytes_sent=wire_bytes(self.transport, estimate),
                seconds=seconds,
                wait_s=seconds,
                world_size=int(self.transport.world_size),
                contributors=len(group),
                retries=retries,
            )
        )

    def close(self) -> None:
        """Nothing runs in the background: here so that code written for DiLoCo runs."""

    def state_dict(self) -> dict[str, Any]:
        """Slow weights, outer momentum, the step counter and the traffic so far."""
        return {
            "step": self._step,
            "phi": self._phi.clone(),
            "momentum": self._momentum.clone(),
            "stats": self.stats.as_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["phi"].shape) != tuple(self._phi.shape):
            raise InvalidArgumentError(
                f"state holds {state['phi'].numel()} slow weights, the model has "
                f"{self._phi.numel()}",
                "state",
            )
        self._step = int(state["step"])
        self._phi.copy_(state["phi"])
        self._momentum.copy_(state["momentum"])
        self.stats = CommStats.from_dict(state["stats"])
