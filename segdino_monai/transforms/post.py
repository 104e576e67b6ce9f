"""Post-processing of network logits into masks, and writing them as PNG masks, colour overlays and NIfTI."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    FillHolesd,
    KeepLargestConnectedComponentd,
    MapTransform,
    Transform,
)
from PIL import Image

from segdino_monai.atomic import atomic_write
from segdino_monai.data.images import read_image

__all__ = ["SaveSegmentationd", "mask_stem", "prediction_postprocessing", "to_onehot_for_metrics"]

logger = logging.getLogger(__name__)

# Overlay colours of classes 1, 2, ... (class 0, the background, is not drawn).
PALETTE = ((0, 255, 0), (255, 0, 0), (0, 128, 255), (255, 200, 0), (255, 0, 255), (0, 255, 255))


def prediction_postprocessing(
    num_classes: int,
    keys: KeysCollection = "pred",
    largest_component: bool = False,
    fill_holes: bool = False,
    invert: Transform | None = None,
) -> Compose:
    """Logits ``(C, H, W)`` to a class-index mask ``(1, H, W)``: sigmoid > 0.5 for one channel, else argmax.

    Args:
        num_classes: output channels of the network (1 for binary).
        keys: the prediction key(s).
        largest_component: keep only the largest connected component of each class.
        fill_holes: fill holes inside each class region.
        invert: a transform mapping the prediction back to the original image (``monai.transforms.Invertd``). It is
            applied to the probabilities, between the activation and the thresholding: what the inversion pads (a
            cropped border) is then probability 0, background, and resizing probabilities keeps boundaries smooth.
            Inverting logits instead would pad zeros, sigmoid 0.5, which a 0.5 threshold counts as foreground.
    """
    activation = Activationsd(keys, sigmoid=True) if num_classes == 1 else Activationsd(keys, softmax=True)
    discrete = AsDiscreted(keys, threshold=0.5) if num_classes == 1 else AsDiscreted(keys, argmax=True)
    steps: list[Transform] = [activation, *([invert] if invert is not None else []), discrete]
    if fill_holes:
        steps.append(FillHolesd(keys))
    if largest_component:
        steps.append(KeepLargestConnectedComponentd(keys, is_onehot=False, independent=True))
    return Compose(steps)


def to_onehot_for_metrics(num_classes: int, keys: KeysCollection = ("pred", "label")) -> Compose:
    """One-hot class-index masks for MONAI's metrics when ``num_classes`` (background included) > 1; binary as is."""
    return Compose([AsDiscreted(keys, to_onehot=num_classes)] if num_classes > 1 else [])


def mask_stem(source: str | Path) -> str:
    """The file name stem of the masks written for the image ``source`` (``case.nii.gz`` -> ``case``)."""
    name = Path(source).name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem


class SaveSegmentationd(MapTransform):
    """Write each mask as ``<stem>_<suffix>.png``, a colour ``<stem>_overlay.png`` and optionally NIfTI.

    MONAI's PNG writer expects MONAI's default (W, H) PIL axis order, while this package keeps arrays in the file's
    (H, W) order, and MONAI has no overlay writer: hence this transform. Files are written atomically.

    Args:
        keys: the class-index mask key(s), ``(1, H, W)`` at the original image size.
        output_dir: the folder to write into.
        image_key: the key whose meta data names the source image (for the file stem and the overlay).
        suffix: the mask file name suffix (``mask`` for predictions; e.g. ``label`` for the reference masks).
        overlay: write the overlay on the source image.
        nifti: also write ``<stem>_mask.nii.gz`` (axes x = column, y = row, as MONAI reads PNGs by default).
        alpha: opacity of the overlay colours.
        resize_source: masks are at the model's input size, not the original one (evaluation without inversion,
            the paper protocol): the overlay is drawn on the source image resized to the mask (bicubic). Otherwise
            a source whose size differs from its mask is an error.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | Path,
        image_key: str = "image",
        suffix: str = "mask",
        overlay: bool = True,
        nifti: bool = False,
        alpha: float = 0.45,
        resize_source: bool = False,
    ) -> None:
        super().__init__(keys)
        self.output_dir = Path(output_dir)
        self.image_key = image_key
        self.suffix = suffix
        self.overlay = overlay
        self.nifti = nifti
        self.alpha = alpha
        self.resize_source = resize_source

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Write the files of one sample; the data pass through unchanged."""
        d = dict(data)
        source = _source_path(d, self.image_key)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for key in self.key_iterator(d):
            mask = np.asarray(torch.as_tensor(d[key]).detach().cpu()).astype(np.uint8)
            if mask.ndim != 3 or mask.shape[0] != 1:
                raise ValueError(
                    f"SaveSegmentationd expects a (1, H, W) class-index mask for {key!r}, got {mask.shape}"
                )
            mask = mask[0]
            stem = self.output_dir / mask_stem(source)
            png = mask * 255 if mask.max() <= 1 else mask
            mask_png = Image.fromarray(png.astype(np.uint8))
            atomic_write(f"{stem}_{self.suffix}.png", lambda tmp, image=mask_png: image.save(tmp, format="PNG"))
            if self.overlay:
                overlay = self._overlay(source, mask)
                atomic_write(f"{stem}_overlay.png", lambda tmp, image=overlay: image.save(tmp, format="PNG"))
            if self.nifti:
                import nibabel as nib

                volume = nib.Nifti1Image(mask.T.copy(), np.eye(4))
                atomic_write(f"{stem}_{self.suffix}.nii.gz", lambda tmp, image=volume: nib.save(image, tmp))
        return d

    def _overlay(self, source: str, mask: np.ndarray) -> Image.Image:
        # the package's reader (TIFF, 16-bit, palette and CMYK sources as the model saw them), blended in 8 bits a
        # band of rows at a time, only where the mask is: a 24-megapixel source costs two 8-bit copies, no float one
        rgb = read_image(source)
        if self.resize_source:
            rgb = np.asarray(Image.fromarray(rgb).resize(mask.shape[::-1], Image.Resampling.BICUBIC))
        if rgb.shape[:2] != mask.shape:
            raise ValueError(f"{source}: image size {rgb.shape[:2]} differs from its mask {mask.shape}")
        rgb = rgb if rgb.flags.writeable else rgb.copy()
        band = 256
        for index in range(1, int(mask.max()) + 1):
            colour = np.array(PALETTE[(index - 1) % len(PALETTE)], dtype=np.float32)
            for top in range(0, mask.shape[0], band):
                rows, region = rgb[top : top + band], mask[top : top + band] == index
                blended = (1 - self.alpha) * rows[region].astype(np.float32) + self.alpha * colour
                rows[region] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return Image.fromarray(rgb)


def _source_path(data: Mapping[Hashable, object], image_key: str) -> str:
    for value in (data.get(image_key), *data.values()):
        name = getattr(value, "meta", {}).get("filename_or_obj") if value is not None else None
        if name:
            return str(name[0] if isinstance(name, Sequence) and not isinstance(name, str) else name)
    raise ValueError(f"No source file name in the meta data of {image_key!r}: cannot name the output files")
