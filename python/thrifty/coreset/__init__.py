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
from thrifty.coreset._coreset import Coreset
from thrifty.coreset._embedding import subspace_embedding
from thrifty.coreset._kmeans import kmeans, kmeans_cost, kmeans_sensitivities
from thrifty.coreset._lewis import lewis_weights
from thrifty.coreset._regression import RegressionResult, lp_regression, regression
from thrifty.coreset._scores import leverage_scores, root_leverage_scores
from thrifty.coreset._sensitivity import lp_sensitivities

# isort: split
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

__all__: list[str] = [  # noqa: RUF022 (grouped in marked blocks, one per topic)
    # --- scores and coresets ---
    "Coreset",
    "RegressionResult",
    "kmeans",
    "kmeans_cost",
    "kmeans_sensitivities",
    "leverage_scores",
    "lewis_weights",
    "lp_regression",
    "lp_sensitivities",
    "regression",
    "root_leverage_scores",
    "subspace_embedding",
    # --- end scores and coresets ---
    # --- sampling and samplers ---
    "ImportanceSampler",
    "RS2Sampler",
    "last_layer_gradient_norms",
    "sample",
    # --- end sampling and samplers ---
]
