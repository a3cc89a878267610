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
* :class:`ImportanceSampler` -- sampling by score, with the loss weights, past 2^24;
  :func:`last_layer_gradient_norms` gives it scores without per-sample backward passes.

:func:`lp_regression` solves (weighted) lp regression by IRLS and :func:`kmeans_cost`
measures a k-means coreset. CuPy arrays and CUDA tensors get their leverage scores and
Lewis weights on the device (``cuda/coreset.cu``). The RS2 time-to-accuracy comparison on
scikit-learn's digits is a workload of the source repository (``benches/workloads/``).

Examples
--------
>>> import numpy as np
>>> from thrifty import coreset
>>> A = np.random.default_rng(0).standard_normal((1000, 3))
>>> w = coreset.lewis_weights(A, 1.0)
>>> round(float(w.sum()), 3)
3.0
>>> c = coreset.subspace_embedding(A, 1.0, 300, method="lewis", seed=0)
>>> bool(c.distortion(A, np.eye(3)) < 0.3)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from thrifty.coreset._coreset import Coreset
from thrifty.coreset._embedding import subspace_embedding
from thrifty.coreset._gradient_norms import last_layer_gradient_norms
from thrifty.coreset._kmeans import kmeans, kmeans_cost, kmeans_sensitivities
from thrifty.coreset._lewis import lewis_weights
from thrifty.coreset._regression import RegressionResult, lp_regression, regression
from thrifty.coreset._sample import sample
from thrifty.coreset._scores import leverage_scores, root_leverage_scores
from thrifty.coreset._sensitivity import lp_sensitivities

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


__all__ = [
    "Coreset",
    "ImportanceSampler",
    "RS2Sampler",
    "RegressionResult",
    "kmeans",
    "kmeans_cost",
    "kmeans_sensitivities",
    "last_layer_gradient_norms",
    "leverage_scores",
    "lewis_weights",
    "lp_regression",
    "lp_sensitivities",
    "regression",
    "root_leverage_scores",
    "sample",
    "subspace_embedding",
]
