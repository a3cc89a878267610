"""A flow-matching model on scikit-learn's digits, scored by a Frechet distance.

The workload behind ``thrifty.steps``' image results: a small fully convolutional flow
(:class:`DigitsFlow`) trained on the 1,797 digits at 16 x 16 and 8 x 8, and a classifier
(:class:`DigitsClassifier`) whose features define an "FID on digits". Both ship as weights
of a few hundred kB, made by :mod:`.train`.

* :mod:`.boss_table` -- Frechet distance against NFE for uniform, EDM, BOSS, student and
  auto schedules, beside the fine teacher and the real data's own floor;
* :mod:`.straighten` -- BOSS's straightening fine-tune towards one schedule's knots;
* :mod:`.bottleneck` -- Bottleneck Sampling plans against full resolution: distance,
  FLOPs and wall time.

Examples
--------
>>> import torch
>>> from benches.workloads.steps_digits import load_flow, digits
>>> images, _ = digits()
>>> halfway = torch.full((2,), 0.5)
>>> tuple(images.shape), tuple(load_flow()(images[:2], halfway).shape)
((1797, 1, 16, 16), (2, 1, 16, 16))
"""

from benches.workloads.steps_digits.data import HALF, SIZE, digits
from benches.workloads.steps_digits.fid import FrechetScorer, Gaussian, frechet_distance
from benches.workloads.steps_digits.model import DigitsClassifier, DigitsFlow
from benches.workloads.steps_digits.weights import load_classifier, load_flow

__all__ = [
    "HALF",
    "SIZE",
    "DigitsClassifier",
    "DigitsFlow",
    "FrechetScorer",
    "Gaussian",
    "digits",
    "frechet_distance",
    "load_classifier",
    "load_flow",
]
