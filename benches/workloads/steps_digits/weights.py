"""The shipped weights of the digits workload, made by :mod:`.train`.

They are stored as float32 ``state_dict`` files beside this module and loaded with
``weights_only=True``, so loading never runs pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benches.workloads.steps_digits.model import DigitsClassifier, DigitsFlow
from thrifty._extras import require

HERE = Path(__file__).resolve().parent
FLOW = HERE / "flow.pt"
CLASSIFIER = HERE / "classifier.pt"


def save(model: Any, path: Path) -> None:
    torch = require("torch")
    torch.save({k: v.float().contiguous() for k, v in model.state_dict().items()}, path)


def _load(model: Any, path: Path) -> Any:
    torch = require("torch")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


def load_flow() -> DigitsFlow:
    """The trained :class:`DigitsFlow` (evaluation mode, no gradients)."""
    return _load(DigitsFlow(), FLOW)  # type: ignore[no-any-return]


def load_classifier() -> DigitsClassifier:
    """The trained :class:`DigitsClassifier` (evaluation mode, no gradients)."""
    return _load(DigitsClassifier(), CLASSIFIER)  # type: ignore[no-any-return]
