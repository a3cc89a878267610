"""Parameters to one flat fp32 vector and back: the unit every exchange works on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thrifty._extras import require


def flatten(params: Sequence[Any]) -> Any:
    """A new fp32 vector holding ``params`` (any dtype), on their device."""
    torch = require("torch")
    with torch.no_grad():
        return torch.cat([p.detach().reshape(-1).to(torch.float32) for p in params])


def write_back(params: Sequence[Any], flat: Any) -> None:
    """Copy ``flat`` into ``params`` in place, cast to each parameter's dtype."""
    torch = require("torch")
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n
