"""A Frechet distance on digits: FID with a digits classifier in place of Inception.

FID (Heusel et al., arXiv 1706.08500) fits a Gaussian to the features of the real images
and one to those of the generated images and reports the Frechet distance between them,
``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))``. Here the features are the 64-wide
penultimate layer of :class:`~.model.DigitsClassifier`, trained on the same digits, so the
number is comparable between runs of this workload and not with published FIDs.

The trace of the matrix square root is computed as the sum of the square roots of the
eigenvalues of ``S_r^(1/2) S_g S_r^(1/2)``, a symmetric positive semi-definite matrix with
the same spectrum as ``S_r S_g``: unlike ``scipy.linalg.sqrtm`` of the product, this never
returns a complex part from rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from thrifty._extras import require

#: Images per classifier batch.
BATCH = 1000


@dataclass(frozen=True)
class Gaussian:
    """Mean and covariance of a set of feature vectors."""

    mean: np.ndarray[Any, Any]
    covariance: np.ndarray[Any, Any]

    @classmethod
    def fit(cls, features: np.ndarray[Any, Any]) -> Gaussian:
        features = np.asarray(features, dtype=np.float64)
        return cls(features.mean(axis=0), np.cov(features, rowvar=False))


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
    """The squared 2-Wasserstein distance between two Gaussians."""
    values, vectors = np.linalg.eigh(a.covariance)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ b.covariance @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    shift = float(np.sum((a.mean - b.mean) ** 2))
    return shift + float(np.trace(a.covariance) + np.trace(b.covariance) - 2.0 * cross)


class FrechetScorer:
    """Scores generated 16 x 16 digits against the real ones.

    Examples
    --------
    >>> from benches.workloads.steps_digits import FrechetScorer, digits, load_classifier
    >>> images, _ = digits()
    >>> scorer = FrechetScorer(load_classifier(), images)
    >>> scorer.score(images) < 1e-6
    True
    """

    def __init__(self, classifier: Any, real: Any) -> None:
        self.classifier = classifier
        self.real = Gaussian.fit(self.features(real))

    def features(self, images: Any) -> np.ndarray[Any, Any]:
        """The classifier's features of ``(batch, 1, 16, 16)`` images, as float64."""
        torch = require("torch")
        with torch.no_grad():
            parts = [self.classifier.features(part) for part in images.split(BATCH)]
        return torch.cat(parts).double().numpy()  # type: ignore[no-any-return]

    def score(self, images: Any) -> float:
        """The Frechet distance of ``images``' features to the real ones'."""
        return frechet_distance(self.real, Gaussian.fit(self.features(images)))
