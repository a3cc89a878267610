"""thrifty.optim: Muon, Drop-Muon with a truly truncated backward pass, and AdaGradNorm.

* :class:`Muon` -- momentum orthogonalised by :func:`newton_schulz` (batched over
  same-shape parameters); :func:`muon_param_groups` routes embeddings, the output layer,
  biases and norms to an auxiliary AdamW by module type.
* :class:`DropMuon` -- updates a random suffix of the layers, and freezes the rest before
  the forward pass so that the backward pass really stops (arXiv 2510.02239).
  :func:`start_distribution` gives its start-index probabilities from per-layer backward
  costs and smoothness.
* :class:`AdaGradNorm` -- AdaGrad with one scalar step size (arXiv 1806.01811).

The optimizers subclass ``torch.optim.Optimizer``: importing this module imports torch.
The Drop-Muon against Muon comparison on a digits CNN is a workload of the source repository
(``benches/workloads/``).
"""

from __future__ import annotations

from thrifty.optim._adagrad_norm import AdaGradNorm
from thrifty.optim._drop_muon import DropMuon
from thrifty.optim._muon import Muon
from thrifty.optim._newton_schulz import newton_schulz
from thrifty.optim._param_groups import MuonParamGroups, muon_param_groups
from thrifty.optim._start_distribution import start_distribution

__all__ = [
    "AdaGradNorm",
    "DropMuon",
    "Muon",
    "MuonParamGroups",
    "muon_param_groups",
    "newton_schulz",
    "start_distribution",
]
