"""thrifty.optim: Muon, Drop-Muon with a truly truncated backward pass, and AdaGradNorm."""

from __future__ import annotations

# --- muon ---
# --- end muon ---
# --- adagrad ---
from thrifty.optim._adagrad_norm import AdaGradNorm

# --- end adagrad ---

__all__: list[str] = [
    # --- muon ---
    # --- end muon ---
    # --- adagrad ---
    "AdaGradNorm",
    # --- end adagrad ---
]
