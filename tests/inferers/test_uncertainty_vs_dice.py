"""On real images with a trained decoder, the per-image uncertainty of the TTA prediction is higher where Dice is
lower: Spearman's correlation is negative (its sign only is asserted; a random tiny backbone is no real model).

The decoder trains for a few dozen full-batch steps on the backbone's features of 12 HAM10000 dermoscopy images
(and their mirror images) at 128x128, and is scored on the other 24 images of the fixture.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr

from segdino_monai.inferers import TTAInferer
from segdino_monai.metrics.uncertainty import scalar_uncertainty
from segdino_monai.networks import SegDINO
from segdino_monai.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests.conftest import TINY_VIT

SIZE, TRAIN, STEPS = 128, 12, 60

logger = logging.getLogger(__name__)


def _load(fixtures_dir) -> tuple[torch.Tensor, torch.Tensor]:
    folder = fixtures_dir / "dermoscopy" / "ham10000"
    images, masks = [], []
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    for path in sorted((folder / "images").iterdir()):
        rgb = np.array(Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        images.append((torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - mean) / std)
        mask = Image.open(next((folder / "masks").glob(f"{path.stem}*"))).convert("L")
        masks.append(torch.from_numpy(np.array(mask.resize((SIZE, SIZE), Image.Resampling.NEAREST)) > 127)[None])
    return torch.stack(images), torch.stack(masks).float()


def test_uncertainty_correlates_negatively_with_dice(fixtures_dir):
    images, masks = _load(fixtures_dir)
    assert len(images) == 36
    torch.manual_seed(0)
    net = SegDINO(backbone_kwargs=TINY_VIT)
    train_x = torch.cat([images[:TRAIN], images[:TRAIN].flip(3)])
    train_y = torch.cat([masks[:TRAIN], masks[:TRAIN].flip(3)])
    with torch.no_grad():
        features = net.backbone(train_x)  # frozen: computed once
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-3)
    net.train()
    for _ in range(STEPS):
        logits = net.decode(features, (SIZE, SIZE))
        probs = torch.sigmoid(logits)
        dice_loss = 1 - (2 * (probs * train_y).sum() + 1) / (probs.sum() + train_y.sum() + 1)
        loss = F.binary_cross_entropy_with_logits(logits, train_y) + dice_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        probs = TTAInferer(flips=["horizontal", "vertical"]).probabilities(images[TRAIN:], net)
    dice, uncertainty = [], []
    for p, reference in zip(probs, masks[TRAIN:] > 0, strict=True):
        found = p > 0.5
        dice.append(float(2 * (found & reference).sum() / max(int(found.sum() + reference.sum()), 1)))
        uncertainty.append(scalar_uncertainty(p, found))
    rho = spearmanr(uncertainty, dice).statistic
    logger.warning("uncertainty vs Dice on %d images (mean Dice %.3f): Spearman %.3f", len(dice), np.mean(dice), rho)
    assert np.mean(dice) > 0.5  # a model worth asking: it finds the lesions
    assert rho < 0, f"Spearman's correlation of uncertainty and Dice is {rho:.3f}"
