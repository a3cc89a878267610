"""The two networks of the digits workload: a flow-matching velocity and a feature classifier.

:class:`DigitsFlow` is a small U-Net with no layer that depends on the image size (3 x 3
convolutions, one stride-2 down and one nearest up, group norms, a time embedding added per
channel), so the same weights run at 16 x 16 and at 8 x 8, as Bottleneck Sampling needs. It
is trained at both resolutions.

:class:`DigitsClassifier` is the feature extractor of the Frechet distance: a small CNN
trained to classify the 16 x 16 digits, whose penultimate layer plays the part of
Inception's pool features in FID.
"""

from __future__ import annotations

import math
from typing import Any

from thrifty._extras import require

require("torch")  # a clear MissingExtraError, not an ImportError, without torch

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional  # noqa: E402

#: Channels of the flow network at full resolution (twice as many at half).
WIDTH = 24
#: Frequencies of the sinusoidal time embedding.
FREQUENCIES = 16
#: Width of the classifier's feature layer: the dimension of the Frechet distance.
FEATURES = 64


class _TimeEmbedding(nn.Module):
    """Sinusoids of ``t`` in ``[0, 1]`` at geometric frequencies, then an MLP."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("frequencies", math.pi * torch.logspace(0, 3, FREQUENCIES, base=2.0))
        self.mlp = nn.Sequential(
            nn.Linear(2 * FREQUENCIES, width), nn.SiLU(), nn.Linear(width, width)
        )

    def forward(self, t: Any) -> Any:
        angles = t[:, None] * self.frequencies
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class _Block(nn.Module):
    """Two 3 x 3 convolutions with a residual, the time added between them."""

    def __init__(self, channels_in: int, channels: int, embedding: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels, 3, padding=1)
        self.time = nn.Linear(embedding, channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.skip = (
            nn.Identity() if channels_in == channels else nn.Conv2d(channels_in, channels, 1)
        )

    def forward(self, x: Any, embedding: Any) -> Any:
        h = self.conv1(functional.silu(self.norm1(x)))
        h = h + self.time(embedding)[:, :, None, None]
        h = self.conv2(functional.silu(self.norm2(h)))
        return self.skip(x) + h


class DigitsFlow(nn.Module):
    """Velocity ``v(x, t)`` of a rectified flow from noise (``t = 0``) to digits (``t = 1``).

    ``x`` is ``(batch, 1, H, W)`` with even ``H`` and ``W`` (16 or 8 here), ``t`` is
    ``(batch,)``.
    """

    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        embedding = 4 * width
        self.embed = _TimeEmbedding(embedding)
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.down_block = _Block(width, width, embedding)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.middle = nn.ModuleList(
            [_Block(2 * width, 2 * width, embedding), _Block(2 * width, 2 * width, embedding)]
        )
        self.up = nn.Conv2d(2 * width, width, 3, padding=1)
        self.up_block = _Block(2 * width, width, embedding)
        self.head = nn.Sequential(
            nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, 1, 3, padding=1)
        )

    def forward(self, x: Any, t: Any) -> Any:
        embedding = self.embed(t)
        skip = self.down_block(self.stem(x), embedding)
        h = self.down(skip)
        for block in self.middle:
            h = block(h, embedding)
        h = self.up(functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up_block(torch.cat([h, skip], dim=1), embedding)
        return self.head(h)


class DigitsClassifier(nn.Module):
    """A CNN on 16 x 16 digits; :meth:`features` is the space of the Frechet distance."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, FEATURES),
            nn.SiLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: Any) -> Any:
        return self.body(x)

    def forward(self, x: Any) -> Any:
        return self.head(self.features(x))
