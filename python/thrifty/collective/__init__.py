"""thrifty.collective: a fault-tolerant, authenticated, quantizing all-reduce over TCP.

A coordinator plus peers, as in PCCL (arXiv 2505.14065): every change of membership is a
vote, every collective ends in a commit vote, and a failed collective restores the caller's
buffer exactly and raises :class:`PeerLost`, so the survivors call ``update_topology()``
and retry with the smaller world.

* :class:`Coordinator` -- membership and votes (or ``thrifty coordinator`` on a shell).
* :class:`Communicator` -- one peer: :meth:`~Communicator.all_reduce` (exact or quantized
  to int8, fp8 or fp4), :meth:`~Communicator.all_reduce_async`,
  :meth:`~Communicator.broadcast`, :meth:`~Communicator.all_gather`,
  :meth:`~Communicator.barrier`, :meth:`~Communicator.all_gather_scalars`,
  :meth:`~Communicator.pair_average` (NoLoCo) and :meth:`~Communicator.sync_state`.
* :class:`TorchDistributed` -- the same calls over a ``torch.distributed`` process group.

Every connection authenticates with a mutual HMAC-SHA256 challenge-response over a
pre-shared secret (``secret=`` or ``THRIFTY_SECRET``); it does not encrypt, so run it inside
a VPN across untrusted networks.

Examples
--------
>>> import numpy as np
>>> from thrifty import collective
>>> with collective.Coordinator(secret="s3cret") as coordinator:
...     with collective.Communicator(coordinator.address, secret="s3cret") as comm:
...         comm.connect()
...         while comm.world_size < 1:  # the number of peers you start
...             comm.update_topology()
...         x = np.ones(1000, dtype=np.float32)
...         comm.all_reduce(x, quantize="int8")
...         handle = comm.all_reduce_async(x, op="avg")
...         stats = handle.wait()
...         report = comm.sync_state({"weights": x}, revision=0)
>>> float(x[0]), report.revision, report.fetched
(1.0, 0, ())
"""

from __future__ import annotations

from thrifty.collective._communicator import Communicator, Handle, OpStats, SyncReport
from thrifty.collective._coordinator import Coordinator, CoordinatorSnapshot
from thrifty.collective._pairing import pairing_groups
from thrifty.collective._state_hash import state_hash
from thrifty.collective._torch_distributed import TorchDistributed, TorchSyncReport
from thrifty.errors import (
    AuthenticationError,
    CollectiveAborted,
    CollectiveError,
    CollectiveTimeout,
    PeerLost,
)

__all__ = [
    "AuthenticationError",
    "CollectiveAborted",
    "CollectiveError",
    "CollectiveTimeout",
    "Communicator",
    "Coordinator",
    "CoordinatorSnapshot",
    "Handle",
    "OpStats",
    "PeerLost",
    "SyncReport",
    "TorchDistributed",
    "TorchSyncReport",
    "pairing_groups",
    "state_hash",
]
