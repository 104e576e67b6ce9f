"""The uncertainty maths against an independent numpy/scipy computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from segdino_monai.metrics.uncertainty import BORDER_BAND, entropy_map, scalar_uncertainty


def _numpy_entropy(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy of (C, H, W) probabilities; C == 1 is the foreground probability."""
    p = np.concatenate([probs, 1 - probs]) if probs.shape[0] == 1 else probs
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=0) / math.log(p.shape[0])


def test_binary_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    probs = rng.random((2, 1, 7, 9))
    probs[0, 0, 0, :3] = [0.0, 1.0, 0.5]
    got = entropy_map(torch.from_numpy(probs))
    assert got.shape == (2, 1, 7, 9) and got.dtype == torch.float64
    for b in range(2):
        np.testing.assert_allclose(got[b, 0].numpy(), _numpy_entropy(probs[b]), atol=1e-12)
    np.testing.assert_allclose(got[0, 0, 0, :3].numpy(), [0.0, 0.0, 1.0], atol=1e-12)  # certain, certain, a coin toss


def test_categorical_entropy_matches_numpy():
    rng = np.random.default_rng(1)
    probs = rng.random((3, 5, 6)).astype(np.float32)
    probs /= probs.sum(axis=0, keepdims=True)
    probs[:, 0, 0] = [1.0, 0.0, 0.0]
    probs[:, 0, 1] = 1 / 3
    got = entropy_map(torch.from_numpy(probs))  # (C, H, W): no batch
    assert got.shape == (1, 5, 6) and got.dtype == torch.float32
    np.testing.assert_allclose(got[0].numpy(), _numpy_entropy(probs.astype(np.float64)), atol=1e-6)
    assert got[0, 0, 0] == 0 and got[0, 0, 1] == pytest.approx(1.0, abs=1e-6)


def test_scalar_uncertainty_is_the_mean_over_the_object_and_its_band():
    rng = np.random.default_rng(2)
    probs = rng.random((1, 40, 50))
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:18, 20:31] = True
    region = ndimage.binary_dilation(mask, structure=np.ones((2 * BORDER_BAND + 1,) * 2, dtype=bool))
    expected = _numpy_entropy(probs)[region].mean()
    assert region.sum() == (8 + 10) * (11 + 10)  # the box grown by 5 pixels on each side
    assert scalar_uncertainty(torch.from_numpy(probs), torch.from_numpy(mask)) == pytest.approx(expected, abs=1e-12)
    # the same from a batch of one, a (1, H, W) class-index mask, and a narrower band
    narrow = ndimage.binary_dilation(mask, structure=np.ones((5, 5), dtype=bool))
    got = scalar_uncertainty(torch.from_numpy(probs)[None], torch.from_numpy(mask.astype(np.uint8) * 2)[None], band=2)
    assert got == pytest.approx(_numpy_entropy(probs)[narrow].mean(), abs=1e-12)


def test_scalar_uncertainty_defaults_and_empty_masks():
    rng = np.random.default_rng(3)
    probs = torch.from_numpy(rng.random((1, 30, 30)) * 0.4)  # nothing above 0.5: an empty prediction
    whole = _numpy_entropy(probs.numpy()).mean()
    assert scalar_uncertainty(probs) == pytest.approx(whole, abs=1e-12)
    assert scalar_uncertainty(probs, torch.zeros(30, 30)) == pytest.approx(whole, abs=1e-12)
    probs[0, 5:10, 5:10] = 0.9
    assert scalar_uncertainty(probs) == pytest.approx(scalar_uncertainty(probs, probs[0] > 0.5), abs=1e-12)
    classes = torch.softmax(torch.from_numpy(rng.normal(size=(3, 30, 30))), dim=0)
    assert scalar_uncertainty(classes) == pytest.approx(scalar_uncertainty(classes, classes.argmax(0)), abs=1e-12)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="entropy_map expects"):
        entropy_map(torch.rand(5, 5))
    with pytest.raises(ValueError, match="one image"):
        scalar_uncertainty(torch.rand(2, 1, 5, 5))
    with pytest.raises(ValueError, match="mask of shape"):
        scalar_uncertainty(torch.rand(1, 5, 5), torch.ones(4, 5))
