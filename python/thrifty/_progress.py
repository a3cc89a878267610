"""Progress bars for long work: tqdm when it is installed, silence otherwise."""

from __future__ import annotations

import warnings
from typing import Any

from thrifty._extras import available, require


class _Silent:
    def update(self, n: int = 1) -> None:
        del n

    def set_postfix_str(self, text: str) -> None:
        del text

    def close(self) -> None:
        return None

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_warned = False


def progress_bar(total: int, description: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` units, or a silent stand-in when disabled.

    tqdm is the ``thrifty[progress]`` extra; without it a one-time warning says so and the
    work goes on without a bar rather than failing.
    """
    global _warned
    if not enabled:
        return _Silent()
    if not available("tqdm.auto"):
        if not _warned:
            warnings.warn("install 'thrifty[progress]' (tqdm) for progress bars", stacklevel=3)
            _warned = True
        return _Silent()
    return require("tqdm.auto").tqdm(total=total, desc=description, leave=False)
