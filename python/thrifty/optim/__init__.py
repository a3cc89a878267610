"""thrifty.optim: Muon, Drop-Muon with a truly truncated backward pass, and AdaGradNorm."""

from __future__ import annotations

# --- muon ---
# --- end muon ---
# --- adagrad ---
# --- end adagrad ---

__all__: list[str] = [
    # --- muon ---
    # --- end muon ---
    # --- adagrad ---
    # --- end adagrad ---
]
