"""thrifty.optim: Muon, Drop-Muon with a truly truncated backward pass, and AdaGradNorm."""

from __future__ import annotations

# --- muon ---
from thrifty.optim._drop_muon import DropMuon
from thrifty.optim._muon import Muon
from thrifty.optim._newton_schulz import newton_schulz
from thrifty.optim._param_groups import MuonParamGroups, muon_param_groups

# --- end muon ---
# --- adagrad ---
from thrifty.optim._adagrad_norm import AdaGradNorm

# --- end adagrad ---

__all__: list[str] = [
    # --- muon ---
    "DropMuon",
    "Muon",
    "MuonParamGroups",
    "muon_param_groups",
    "newton_schulz",
    # --- end muon ---
    # --- adagrad ---
    "AdaGradNorm",
    # --- end adagrad ---
]
