"""The evaluation's uncertainty metric: one value per image, the object taken from the mask the evaluation scored."""

from __future__ import annotations

import pytest
import torch

from segdino_monai.handlers import UncertaintyMetric
from segdino_monai.metrics.uncertainty import scalar_uncertainty


def test_binary_masks_give_each_image_its_scalar_uncertainty():
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 1, 24, 24, generator=generator)
    masks = (torch.rand(3, 1, 24, 24, generator=generator) > 0.7).float()
    masks[2] = 0  # an empty prediction
    metric = UncertaintyMetric()
    metric(y_pred=list(probs), y=list(masks))  # decollated, as the evaluator's output_transform gives them
    buffer = metric.get_buffer()
    expected = [scalar_uncertainty(p, m) for p, m in zip(probs, masks, strict=True)]
    assert buffer.shape == (3, 1)
    assert buffer[:, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert float(metric.aggregate()) == pytest.approx(sum(expected) / 3, abs=1e-6)


def test_one_hot_masks_take_every_foreground_class_as_the_object():
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(2, 3, 20, 20, generator=generator), dim=1)
    classes = probs.argmax(dim=1)
    one_hot = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float()
    metric = UncertaintyMetric()
    metric(y_pred=probs, y=one_hot)
    expected = [scalar_uncertainty(p, c) for p, c in zip(probs, classes, strict=True)]
    assert metric.get_buffer()[:, 0].tolist() == pytest.approx(expected, abs=1e-6)
