"""Content crops that Invertd can undo: a box from a function of the image, applied as MONAI's CropForeground."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import (
    CropForeground,
    CropForegroundd,
)
from monai.utils import (
    convert_to_tensor,
)

__all__ = ["BoxCrop", "BoxCropd", "BoxFn", "DetectedBoxCrop", "DetectedBoxCropd"]

BoxFn = Callable[[NdarrayOrTensor], tuple[Sequence[int], Sequence[int]]]


class _BoxSelect:
    """A ``select_fn`` for MONAI's foreground crops: True inside the box that ``box_fn`` finds (picklable)."""

    def __init__(self, box_fn: BoxFn) -> None:
        self.box_fn = box_fn

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        start, end = self.box_fn(img)
        selected = torch.zeros((1, *img.shape[1:]), dtype=torch.bool)
        selected[(0, *(slice(int(s), int(e)) for s, e in zip(start, end, strict=True)))] = True
        return selected


class BoxCrop(CropForeground):
    """Crop to a box computed from the image by ``box_fn``, through MONAI's (invertible) ``CropForeground``.

    Subclasses only supply ``box_fn``; MONAI records the crop, so ``Invertd`` pads predictions back to the
    original size.

    Args:
        box_fn: maps a ``(C, H, W)`` image (a ``MetaTensor`` when loaded by MONAI) to ``(start, end)``.
    """

    def __init__(self, box_fn: BoxFn) -> None:
        super().__init__(select_fn=_BoxSelect(box_fn), allow_smaller=True)

    def __call__(self, img: NdarrayOrTensor, **kwargs: object) -> torch.Tensor:  # type: ignore[override]
        """Crop ``img`` to its box (``kwargs`` go to ``CropForeground``)."""
        return super().__call__(convert_to_tensor(img, track_meta=True), **kwargs)  # type: ignore[arg-type]


class BoxCropd(CropForegroundd):
    """Dictionary version of :class:`BoxCrop`: the box comes from ``source_key`` and crops every key alike.

    Args:
        keys: keys to crop (image and label).
        box_fn: maps the ``source_key`` image to ``(start, end)``.
        source_key: the key the box is computed from.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self, keys: KeysCollection, box_fn: BoxFn, source_key: str = "image", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(
            keys,
            source_key=source_key,
            select_fn=_BoxSelect(box_fn),
            allow_smaller=True,
            start_coord_key=None,
            end_coord_key=None,
            allow_missing_keys=allow_missing_keys,
        )


class DetectedBoxCrop(BoxCrop):
    """Crop to the box that the subclass's detector (``box_class``) finds in the image; invertible.

    A modality's crop is then only its detector: ``EndoscopyBorderCrop(work_size=512)`` passes its arguments to
    ``EndoscopyContentBox``, whose signature holds the defaults (written once, there).

    Args:
        box_args: the detector's arguments (see the subclass's ``box_class``).
    """

    box_class: Callable[..., BoxFn]

    def __init__(self, **box_args: Any) -> None:
        super().__init__(self.box_class(**box_args))

    @property
    def box_fn(self) -> BoxFn:
        """The detector, with its settings (``crop.box_fn.work_size``)."""
        return self.select_fn.box_fn  # type: ignore[no-any-return]


class DetectedBoxCropd(BoxCropd):
    """Dictionary version of :class:`DetectedBoxCrop`: the box found in ``source_key`` crops every key alike.

    Args:
        keys: keys to crop (image and label).
        source_key: the image the box is found in.
        allow_missing_keys: do not raise when a key is absent.
        box_args: the detector's arguments (see the subclass's ``box_class``).
    """

    box_class: Callable[..., BoxFn]

    def __init__(
        self, keys: KeysCollection, source_key: str = "image", allow_missing_keys: bool = False, **box_args: Any
    ) -> None:
        super().__init__(keys, self.box_class(**box_args), source_key, allow_missing_keys)

    @property
    def box_fn(self) -> BoxFn:
        """The detector, with its settings (``crop.box_fn.work_size``)."""
        return self.cropper.select_fn.box_fn  # type: ignore[no-any-return]
