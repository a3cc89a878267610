"""thrifty.schedule: adaptive batch sizes, L-GreCo layerwise compression, Small-Gain Nash.

* :class:`AdaptiveBatchSize` -- AdAdaGrad's norm, inner-product and augmented tests
  (arXiv 2402.11215) from micro-batch gradients, never per-sample ones; all-reduced under
  torch.distributed. :class:`AdaptiveBatchSampler` changes the batch size mid-epoch.
* :func:`lgreco` -- per-layer compression levels that minimise the total size under an
  error budget, by an exact DP in Rust; :func:`lgreco_tables` measures the tables for
  ``thrifty.diloco.compressors``.
* :func:`small_gain_certificate` -- block weights, margin, rate and safe Euler and RK4
  steps for a game from per-player curvature and coupling bounds (a :class:`Certificate`).

The AdAdaGrad against fixed-batch AdaGrad comparison on digits is a workload of the source
repository (``benches/workloads/``).
"""

from __future__ import annotations

from thrifty.schedule._adaptive_batch import AdaptiveBatchSize, BatchSizeTest
from thrifty.schedule._batch_sampler import AdaptiveBatchSampler
from thrifty.schedule._lgreco import lgreco, lgreco_tables
from thrifty.schedule._small_gain import Certificate, small_gain_certificate

__all__ = [
    "AdaptiveBatchSampler",
    "AdaptiveBatchSize",
    "BatchSizeTest",
    "Certificate",
    "lgreco",
    "lgreco_tables",
    "small_gain_certificate",
]
