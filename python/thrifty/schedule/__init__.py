"""thrifty.schedule: adaptive batch sizes, L-GreCo layerwise compression, Small-Gain Nash."""

from __future__ import annotations

# --- lgreco and small-gain ---
from thrifty.schedule._lgreco import lgreco, lgreco_tables
from thrifty.schedule._small_gain import Certificate, small_gain_certificate

# --- end lgreco and small-gain ---
# --- adaptive batch size ---
from thrifty.schedule._adaptive_batch import AdaptiveBatchSize, BatchSizeTest
from thrifty.schedule._batch_sampler import AdaptiveBatchSampler

# --- end adaptive batch size ---

__all__: list[str] = [
    # --- lgreco and small-gain ---
    "Certificate",
    "lgreco",
    "lgreco_tables",
    "small_gain_certificate",
    # --- end lgreco and small-gain ---
    # --- adaptive batch size ---
    "AdaptiveBatchSampler",
    "AdaptiveBatchSize",
    "BatchSizeTest",
    # --- end adaptive batch size ---
]
