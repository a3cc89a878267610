"""thrifty.coreset: which samples to keep, and with what weight.

Scores (how much each row of a data matrix can matter):

* :func:`leverage_scores`, :func:`root_leverage_scores`, :func:`lewis_weights`,
  :func:`lp_sensitivities`, :func:`kmeans_sensitivities`.

Sampling and coresets:

* :func:`sample` -- exact weighted sampling with or without replacement, with the weights
  that keep sums unbiased, for n up to 10^9.
* :func:`subspace_embedding`, :func:`regression`, :func:`kmeans` -- a :class:`Coreset`
  (indices and weights) for lp norms, lp regression and k-means.

PyTorch:

* :class:`RS2Sampler` -- a fresh slice of the data every epoch, without replacement across
  epochs (Repeated Random Sampling).
* :class:`ImportanceSampler` -- sampling by score, with the loss weights, past 2^24.
"""

from __future__ import annotations

# --- scores and coresets ---
# --- end scores and coresets ---
# --- sampling and samplers ---
from typing import TYPE_CHECKING, Any

from thrifty.coreset._gradient_norms import last_layer_gradient_norms
from thrifty.coreset._sample import sample

if TYPE_CHECKING:
    from thrifty.coreset._importance import ImportanceSampler
    from thrifty.coreset._rs2 import RS2Sampler

# The samplers subclass torch's Sampler, so their modules import torch: load them only
# when they are touched, keeping torch an optional extra.
_SAMPLERS = {
    "RS2Sampler": "thrifty.coreset._rs2",
    "ImportanceSampler": "thrifty.coreset._importance",
}


def __getattr__(name: str) -> Any:
    if name in _SAMPLERS:
        from thrifty._extras import require

        require("torch")
        module = require(_SAMPLERS[name])
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- end sampling and samplers ---

__all__: list[str] = [
    # --- scores and coresets ---
    # --- end scores and coresets ---
    # --- sampling and samplers ---
    "ImportanceSampler",
    "RS2Sampler",
    "last_layer_gradient_norms",
    "sample",
    # --- end sampling and samplers ---
]
