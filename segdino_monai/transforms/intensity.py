"""Channels and intensity for the network: RGB from any channel count, DINOv3's ImageNet normalisation."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import (
    NormalizeIntensityd,
    Transform,
)

from segdino_monai.transforms.utility import EachKeyd

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EnsureRGB", "EnsureRGBd", "imagenet_normalize"]

#: DINOv3 (ImageNet) statistics for images on 0..1.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)


IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def imagenet_normalize(keys: KeysCollection = "image") -> NormalizeIntensityd:
    """DINOv3 (ImageNet) mean/std normalisation of 0..1 RGB images, per channel.

    Args:
        keys: image keys.

    Returns:
        A configured ``NormalizeIntensityd``.
    """
    return NormalizeIntensityd(keys, subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True)


class EnsureRGB(Transform):
    """Make any ``(C, H, W)`` image three-channel: grey is repeated, alpha (RGBA, LA) is dropped.

    DINOv3 was trained on RGB photos and needs three channels; ultrasound and many grey files have one.
    """

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return the three-channel image.

        Args:
            img: ``(C, H, W)`` image with 1 to 4 channels.

        Returns:
            ``(3, H, W)`` image of the same type.
        """
        channels = img.shape[0]
        if channels in (1, 2):
            return img[:1].repeat(3, 1, 1) if isinstance(img, torch.Tensor) else np.repeat(img[:1], 3, axis=0)
        if channels in (3, 4):
            return img[:3]
        raise ValueError(f"EnsureRGB expects 1 to 4 channels (C, H, W), got shape {tuple(img.shape)}")


class EnsureRGBd(EachKeyd):
    """Dictionary version of :class:`EnsureRGB`.

    Args:
        keys: image keys.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = EnsureRGB()
