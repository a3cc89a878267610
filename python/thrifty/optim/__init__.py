"""thrifty.optim: Muon, Drop-Muon with a truly truncated backward pass, and AdaGradNorm."""

from __future__ import annotations

# --- muon ---
# --- end muon ---
# --- adagrad ---
# --- end adagrad ---

__all__: list[str] = [  # noqa: RUF022 (grouped by topic until the parts are merged)
    # --- muon ---
    # --- end muon ---
    # --- adagrad ---
    # --- end adagrad ---
]
