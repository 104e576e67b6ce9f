"""Colour transforms for RGB photos (endoscopy, dermoscopy): colour constancy and colour jitter.

Endoscopes and dermatoscopes differ in light source, white balance and camera processing, so the same tissue has
different colours from one device to the next. Colour constancy removes part of this at the input; colour jitter
teaches the decoder to ignore the rest.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform

from segdino_monai.transforms.utility import EachKeyd
from segdino_monai.transforms.utils import LUMA_WEIGHTS, as_float32_like, to_numpy

__all__ = ["RandColorJitter", "RandColorJitterd", "ShadesOfGray", "ShadesOfGrayd"]


class ShadesOfGray(Transform):
    """Shades of Gray colour constancy (Finlayson and Trezzi 2004) for ``(3, H, W)`` images.

    The illuminant of channel ``c`` is estimated as the Minkowski ``p``-norm mean ``(mean(I_c ** p)) ** (1 / p)``
    (``p = 1`` is Grey World, ``p = inf`` is max-RGB; ``p = 6`` is the usual choice for dermoscopy, e.g. the ISIC
    challenge winners), and each channel is scaled so that the illuminant becomes neutral grey of the same
    brightness. Dermoscopy photos from different devices get similar channel balance this way.

    Args:
        power: the Minkowski norm ``p``.
        max_value: outputs are clipped to ``[0, max_value]`` (1 for 0..1 images, 255 for 8-bit values).
    """

    def __init__(self, power: float = 6.0, max_value: float = 1.0) -> None:
        if power < 1:
            raise ValueError(f"power must be >= 1, got {power}")
        self.power = power
        self.max_value = max_value

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Balance the channels of a ``(3, H, W)`` image."""
        array = to_numpy(img)
        if array.shape[0] != 3:
            raise ValueError(f"ShadesOfGray expects a (3, H, W) RGB image, got shape {tuple(array.shape)}")
        normed = array / np.float32(self.max_value)  # the one full-size copy; the rest works in place or per channel
        # Minkowski means per channel, accumulated in float64 (no float64 copy of the image: 576 MB at 24 MP)
        means = [np.mean(np.power(np.clip(channel, 0.0, None), self.power), dtype=np.float64) for channel in normed]
        illuminant = np.maximum(np.power(np.asarray(means), 1.0 / self.power), 1e-6)
        gains = (illuminant.mean() / illuminant).astype(np.float32)
        normed *= gains[:, None, None]
        np.clip(normed, 0.0, 1.0, out=normed)
        normed *= np.float32(self.max_value)
        return as_float32_like(normed, img)


class ShadesOfGrayd(EachKeyd):
    """Dictionary version of :class:`ShadesOfGray`.

    Args:
        keys: image keys.
        power: the Minkowski norm ``p``.
        max_value: outputs are clipped to ``[0, max_value]``.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self, keys: KeysCollection, power: float = 6.0, max_value: float = 1.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ShadesOfGray(power, max_value)


class RandColorJitter(RandomizableTransform):
    """Random brightness, contrast, saturation and hue of a ``(3, H, W)`` image on ``0..max_value``.

    MONAI has brightness and contrast transforms but none for saturation or hue, which are what differ most between
    endoscope and dermatoscope cameras. Factors are drawn uniformly from ``[1 - x, 1 + x]`` (hue: a rotation of
    up to ``hue * 180`` degrees around the grey axis), applied in that order, then clipped to ``[0, max_value]``.

    Args:
        prob: probability of applying the jitter.
        brightness: brightness spread.
        contrast: contrast spread (blend with the mean luminance).
        saturation: saturation spread (blend with the luminance image).
        hue: hue spread, as a fraction of 180 degrees.
        max_value: full scale of the image.
    """

    def __init__(
        self,
        prob: float = 0.5,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.05,
        max_value: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.spreads = (brightness, contrast, saturation)
        self.hue = hue
        self.max_value = max_value
        self._factors = (1.0, 1.0, 1.0, 0.0)

    def randomize(self, data: object = None) -> None:
        """Draw whether to apply and the four factors."""
        super().randomize(None)
        if self._do_transform:
            b, c, s = (self.R.uniform(1 - x, 1 + x) for x in self.spreads)
            self._factors = (b, c, s, self.R.uniform(-self.hue, self.hue) * np.pi)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Jitter a ``(3, H, W)`` image."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        array = to_numpy(img) / self.max_value
        if array.shape[0] != 3:
            raise ValueError(f"RandColorJitter expects a (3, H, W) RGB image, got shape {tuple(array.shape)}")
        brightness, contrast, saturation, angle = self._factors
        array = array * brightness
        grey = np.tensordot(LUMA_WEIGHTS, array, axes=1)
        array = (array - grey.mean()) * contrast + grey.mean()
        grey = np.tensordot(LUMA_WEIGHTS, array, axes=1)[None]
        array = (array - grey) * saturation + grey
        array = np.tensordot(_hue_rotation(angle), array, axes=1)
        return as_float32_like(np.clip(array, 0.0, 1.0) * self.max_value, img)


def _hue_rotation(angle: float) -> np.ndarray:
    """The 3x3 matrix rotating RGB colours by ``angle`` radians around the grey axis (Rodrigues)."""
    axis = np.ones(3, dtype=np.float64) / np.sqrt(3.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(axis, axis)
    return rotation.astype(np.float32)


class RandColorJitterd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandColorJitter`: one draw shared by all (image) keys.

    Args:
        keys: image keys.
        prob: probability of applying the jitter.
        brightness: brightness spread.
        contrast: contrast spread.
        saturation: saturation spread.
        hue: hue spread, as a fraction of 180 degrees.
        max_value: full scale of the image.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.05,
        max_value: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.jitter = RandColorJitter(1.0, brightness, contrast, saturation, hue, max_value)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandColorJitterd:
        """Seed this transform and its array transform."""
        super().set_random_state(seed, state)
        self.jitter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Apply the same jitter to every key."""
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        self.jitter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.jitter(d[key], randomize=False)
        return d
