from __future__ import annotations

import pytest
import torch

from segdino_monai.networks import FeatureAligner, MLPDecoder


def test_aligner_shapes_and_linear_by_default():
    aligner = FeatureAligner([48] * 4, proj_channels=(8, 16, 24, 32), aligned_channels=12)
    maps = [torch.rand(2, 48, 5, 7) for _ in range(4)]
    out = aligner(maps)
    assert out.shape == (2, 48, 5, 7) and aligner.out_channels == 48
    # Paper-faithful means affine: f(a) + f(b) - f(0) == f(a + b).
    zeros = [torch.zeros_like(m) for m in maps]
    doubled = aligner([m + m for m in maps])
    torch.testing.assert_close(doubled, 2 * out - aligner(zeros), rtol=1e-4, atol=1e-5)


def test_aligner_resizes_to_the_first_grid():
    aligner = FeatureAligner([4, 4], proj_channels=(4, 4), aligned_channels=3)
    out = aligner([torch.rand(1, 4, 8, 8), torch.rand(1, 4, 4, 4)])
    assert out.shape == (1, 6, 8, 8)


def test_aligner_needs_one_width_per_tap():
    with pytest.raises(ValueError, match="3 taps, 2 widths"):
        FeatureAligner([4, 4, 4], proj_channels=(4, 4))


def test_decoder_single_layer_and_hidden_variant():
    plain = MLPDecoder(16, 3)
    assert sum(p.numel() for p in plain.parameters()) == 16 * 3 + 3
    assert plain(torch.rand(2, 16, 4, 4)).shape == (2, 3, 4, 4)
    hidden = MLPDecoder(16, 1, hidden_channels=8, norm="batch", act="gelu")
    assert hidden(torch.rand(2, 16, 4, 4)).shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match="out_channels must be at least 1"):
        MLPDecoder(16, 0)
