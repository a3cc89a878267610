"""thrifty.diloco: low-communication training in PyTorch loops.

Over :mod:`thrifty.collective` (fault-tolerant, elastic) or ``torch.distributed``:

* :class:`DiLoCo` -- DiLoCo (arXiv 2311.08105) and Streaming DiLoCo (arXiv 2501.18512):
  rare outer Nesterov steps on averaged pseudo-gradients, by fragments, overlapped with
  compute, in fp32, block-quantized (fp4, fp8, int8) or compressed with error feedback;
* :class:`NoLoCo` -- NoLoCo (arXiv 2506.10911): gossip with one random partner instead of
  any all-reduce;
* :mod:`~thrifty.diloco.compressors` -- top-k, random-k and block quantizers, a level per
  layer by :class:`~thrifty.diloco.compressors.LGreCo` (arXiv 2210.17357), with
  :class:`~thrifty.diloco.compressors.ErrorFeedback` and
  :class:`~thrifty.diloco.compressors.EControl` (arXiv 2311.05645), also for plain DDP
  through :func:`ddp_comm_hook`;
* :class:`SharedSeedSPSA` -- zeroth-order fine-tuning that exchanges one byte per worker
  and step (arXiv 2306.10015);
* :class:`Transport` -- what they all exchange through: a
  :class:`thrifty.collective.Communicator` or :class:`thrifty.collective.TorchDistributed`
  (DiLoCo and NoLoCo also wrap a bare ``torch.distributed`` process group).

Examples
--------
>>> from thrifty import diloco
>>> classes = sorted(name for name in diloco.__all__ if name[0].isupper())
>>> classes  # doctest: +NORMALIZE_WHITESPACE
['CommStats', 'DiLoCo', 'Fragment', 'NoLoCo', 'SPSAStepReport', 'SharedSeedSPSA', 'SyncRecord',
 'Transport']
"""

from __future__ import annotations

from thrifty.diloco import compressors
from thrifty.diloco._ddp_hook import ddp_comm_hook
from thrifty.diloco._diloco import DiLoCo
from thrifty.diloco._fragments import Fragment
from thrifty.diloco._noloco import NoLoCo
from thrifty.diloco._spsa import SharedSeedSPSA, SPSAStepReport
from thrifty.diloco._stats import CommStats, SyncRecord
from thrifty.diloco._transport import Transport

__all__ = [
    "CommStats",
    "DiLoCo",
    "Fragment",
    "NoLoCo",
    "SPSAStepReport",
    "SharedSeedSPSA",
    "SyncRecord",
    "Transport",
    "compressors",
    "ddp_comm_hook",
]
