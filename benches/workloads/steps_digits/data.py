"""The digits as images for flow matching: 16 x 16 in ``[-1, 1]``, and their 8 x 8 area means.

scikit-learn ships 1,797 grey 8 x 8 digits with values 0..16. Upsampled bilinearly to
16 x 16 they give the flow model room for two resolutions: the full one, and the half one
that Bottleneck Sampling denoises at. The half-resolution images are the 2 x 2 area means
of the full ones (not the original 8 x 8 pixels), because that is exactly the resizing the
sampler applies to its prediction of the clean image when it enters the bottleneck.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thrifty._extras import require

#: Full resolution of the workload, and the bottleneck's half of it.
SIZE = 16
HALF = SIZE // 2


def digits(*, size: int = SIZE) -> tuple[Any, Any]:
    """All 1,797 digits as a float32 tensor ``(1797, 1, size, size)`` in ``[-1, 1]``, and labels.

    ``size`` is 16 (bilinear upsampling of the shipped 8 x 8 images) or 8 (the 2 x 2 area
    means of the 16 x 16 images).
    """
    torch = require("torch")
    datasets = require("sklearn.datasets")
    bunch = datasets.load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    full = torch.nn.functional.interpolate(
        images, size=(SIZE, SIZE), mode="bilinear", align_corners=False
    )
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    if size == SIZE:
        return full, labels
    if size == HALF:
        return torch.nn.functional.avg_pool2d(full, 2), labels
    raise ValueError(f"size must be {SIZE} or {HALF}, got {size}")


def halves(count: int, *, seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Two disjoint random halves of ``range(count)``: the real data's own Frechet floor."""
    order = np.random.default_rng(seed).permutation(count)
    return order[: count // 2], order[count // 2 : 2 * (count // 2)]
