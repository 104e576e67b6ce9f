"""Post-processing of network logits into masks, and writing them as PNG masks, colour overlays and NIfTI.

Output names: the files written for an image are named ``<name>_mask.png``, ``<name>_overlay.png``, ... where
``<name>`` comes from :func:`output_names`, the one rule shared by the writer (:class:`SaveSegmentationd`) and the
evaluation report, which finds each case's masks by it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
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

from segdino_monai.io.images import read_image
from segdino_monai.io.overlay import overlay
from segdino_monai.io.writers import mask_png, nifti_image
from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.naming import OUTPUT_NAME_KEY, file_stem, path_hash

__all__ = [
    "SaveSegmentationd",
    "prediction_postprocessing",
    "source_path",
    "to_onehot_for_metrics",
]

logger = logging.getLogger(__name__)


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


class SaveSegmentationd(MapTransform):
    """Write each mask as ``<name>_<suffix>.png``, a colour ``<name>_overlay.png`` and optionally NIfTI.

    MONAI's PNG writer expects MONAI's default (W, H) PIL axis order, while this package keeps arrays in the file's
    (H, W) order, and MONAI has no overlay writer: hence this transform. Every file of a sample is prepared before
    the first is written, and each is written atomically, so a failure leaves no partial output behind.

    ``<name>`` is the sample's ``name_key`` entry (set by :func:`with_output_names` from the whole datalist, so that
    ``a.jpg`` and ``a.png``, or ``train/img.png`` and ``val/img.png``, get distinct names); without it, the source
    file's stem. A name already written for another source by this writer is never overwritten: the later source
    gets the stem plus a hash of its path, with a warning.

    Args:
        keys: the class-index mask key(s), ``(1, H, W)`` at the original image size.
        output_dir: the folder to write into.
        image_key: the key whose meta data names the source image (for the file stem and the overlay).
        suffix: the mask file name suffix (``mask`` for predictions; e.g. ``label`` for the reference masks).
        overlay: write the overlay on the source image.
        nifti: also write ``<name>_mask.nii.gz`` (:func:`segdino_monai.io.writers.nifti_image`: x = column, y = row,
            the pixel size from the mask's affine, so a DICOM's PixelSpacing and 1 for a PNG).
        alpha: opacity of the overlay colours.
        resize_source: masks are at the model's input size, not the original one (evaluation without inversion,
            the paper protocol): the overlay is drawn on the source image resized to the mask (bicubic). Otherwise
            a source whose size differs from its mask is an error.
        name_key: the data key holding the output name.
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
        name_key: str = OUTPUT_NAME_KEY,
    ) -> None:
        super().__init__(keys)
        self.output_dir = Path(output_dir)
        self.image_key = image_key
        self.suffix = suffix
        self.overlay = overlay
        self.nifti = nifti
        self.alpha = alpha
        self.resize_source = resize_source
        self.name_key = name_key
        self._claimed: dict[str, str] = {}

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Write the files of one sample; the data pass through unchanged."""
        d = dict(data)
        source = source_path(d, self.image_key)
        stem = self.output_dir / self._output_name(source, d.get(self.name_key))
        files: list[tuple[str, Callable[[str], object]]] = []
        for key in self.key_iterator(d):
            mask = np.asarray(torch.as_tensor(d[key]).detach().cpu()).astype(np.uint8)
            if mask.ndim != 3 or mask.shape[0] != 1:
                raise ValueError(
                    f"SaveSegmentationd expects a (1, H, W) class-index mask for {key!r}, got {mask.shape}"
                )
            mask = mask[0]
            png = mask_png(mask)
            files.append((f"{stem}_{self.suffix}.png", lambda tmp, image=png: image.save(tmp, format="PNG")))
            if self.overlay:
                picture = self._overlay(source, mask)
                files.append((f"{stem}_overlay.png", lambda tmp, image=picture: image.save(tmp, format="PNG")))
            if self.nifti:
                import nibabel as nib

                volume = nifti_image(mask, _pixel_size(d[key]))
                files.append((f"{stem}_{self.suffix}.nii.gz", lambda tmp, image=volume: nib.save(image, tmp)))
        for path, write in files:
            atomic_write(path, write)
        return d

    def _output_name(self, source: str, name: object) -> str:
        """The sample's output name, checked to stay inside the output folder and not to reuse another's."""
        name = str(name if isinstance(name, str) else (name[0] if isinstance(name, Sequence) and name else ""))
        name = name or file_stem(source)
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts:
            raise ValueError(f"{source}: output name {name!r} must be a relative path inside the output folder")
        owner = self._claimed.setdefault(name.lower(), source)
        if owner != source:
            unique = f"{name}-{path_hash(source)}"
            logger.warning(
                "%s and %s would both write %s_*: writing %s_* for the second (name the outputs of a datalist with "
                "segdino_monai.transforms.with_output_names)",
                owner, source, self.output_dir / name, self.output_dir / unique,
            )  # fmt: skip
            self._claimed[unique.lower()] = source
            name = unique
        return name

    def _overlay(self, source: str, mask: np.ndarray) -> Image.Image:
        # the package's reader: TIFF, 16-bit, palette and CMYK sources as the model saw them
        rgb = read_image(source)
        if self.resize_source:
            rgb = np.asarray(Image.fromarray(rgb).resize(mask.shape[::-1], Image.Resampling.BICUBIC))
        if rgb.shape[:2] != mask.shape:
            raise ValueError(f"{source}: image size {rgb.shape[:2]} differs from its mask {mask.shape}")
        return Image.fromarray(overlay(rgb, mask, self.alpha))


def _pixel_size(mask: object) -> list[float] | None:
    """``(row, column)`` spacing of a ``(1, H, W)`` mask's grid from its affine (``None`` when not a MetaTensor).

    The reader gives a DICOM's PixelSpacing (or an ITK file's spacing) to the affine, a PNG the identity; after
    ``Invertd`` the prediction has the source's affine again, and a mask left at the model's size (evaluation
    without inversion) has the resized grid's spacing.
    """
    if not isinstance(mask, MetaTensor):
        return None
    return [float(s) for s in affine_to_spacing(mask.affine, r=2)]


def source_path(data: Mapping[Hashable, object], image_key: str) -> str:
    """The source file name in the meta data of ``image_key`` (else of any other key); ValueError when none has one."""
    for value in (data.get(image_key), *data.values()):
        name = getattr(value, "meta", {}).get("filename_or_obj") if value is not None else None
        if name:
            return str(name[0] if isinstance(name, Sequence) and not isinstance(name, str) else name)
    raise ValueError(f"No source file name in the meta data of {image_key!r}: cannot name the output files")
