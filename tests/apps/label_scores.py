"""A score for the app's ``uncertainty`` strategy in the tests (the real one is ``segdino_monai.uncertainty``'s)."""

from __future__ import annotations

import torch


def mean_entropy(probabilities: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean binary entropy (nats) of the foreground probabilities over the image."""
    p = probabilities.clamp(1e-6, 1 - 1e-6)
    return float((-(p * p.log()) - (1 - p) * (1 - p).log()).mean())
