"""thrifty.schedule: adaptive batch sizes, L-GreCo layerwise compression, Small-Gain Nash."""

from __future__ import annotations

# --- lgreco and small-gain ---
# --- end lgreco and small-gain ---
# --- adaptive batch size ---
# --- end adaptive batch size ---

__all__: list[str] = [
    # --- lgreco and small-gain ---
    # --- end lgreco and small-gain ---
    # --- adaptive batch size ---
    # --- end adaptive batch size ---
]
