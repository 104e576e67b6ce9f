"""Per-modality (train, eval) pipelines from a datalist entry ``{"image": path, "label": path or [paths]}``.

Each pipeline loads the image (:class:`~segdino_monai.data.images.SegDINOImageReader`: any supported file as 8-bit
RGB, channel-first, file row/column order) and the mask (:class:`LoadMaskd`), shrinks images larger than a working
size of ``WORK_SIZE_FACTOR`` times ``spatial_size`` (4 x 256 = 1024 pixels; invertibly, see
:class:`~segdino_monai.transforms.common.ShrinkLongestd`; not when ``spatial_size`` is ``None``, the native-size
mode, and for ultrasound after the region crop), does the modality's clean-ups, resizes to ``spatial_size`` (the
paper's protocol is 256x256; ``None`` keeps the size and pads to a multiple of the patch size), augments (train
only), normalises with the DINOv3 (ImageNet) statistics, and returns ``image`` float32 ``(3, H, W)`` and ``label``
``(1, H, W)`` class indices.
The eval pipeline is deterministic; every spatial step is invertible with ``monai.transforms.Invertd``.

``protocol="paper"`` (:func:`paper_transforms`) is instead the SegDINO paper's reference-code pipeline, the same for
every modality: no clean-ups, no augmentation, Pillow's bicubic resize straight to 256x256 (not invertible).

Bundle configs call these functions through ``_target_``, e.g.
``{"_target_": "segdino_monai.transforms.presets.get_transforms", "modality": "ultrasound"}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.data import ImageReader
from monai.transforms import (
    Compose,
    DivisiblePadd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    Resized,
    ScaleIntensityRanged,
)

from segdino_monai.data.images import LoadRGBImaged
from segdino_monai.data.masks import LoadMaskd
from segdino_monai.transforms.color import RandColorJitterd, ShadesOfGrayd
from segdino_monai.transforms.common import PATCH_SIZE, EnsureRGBd, PILResized, ShrinkLongestd, imagenet_normalize
from segdino_monai.transforms.dermoscopy import DermoscopyVignetteCropd, HairRemovald
from segdino_monai.transforms.endoscopy import EndoscopyBorderCropd, SpecularHighlightRemovald
from segdino_monai.transforms.ultrasound import CLAHEd, RandSpeckleNoised, UltrasoundRegionCropd

__all__ = [
    "MODALITIES",
    "PROTOCOLS",
    "dermoscopy_transforms",
    "endoscopy_transforms",
    "get_transforms",
    "paper_transforms",
    "ultrasound_transforms",
    "WORK_SIZE_FACTOR",
]

KEYS = ("image", "label")
#: images are shrunk first to at most this many times the longest side of ``spatial_size`` (256 -> 1024).
WORK_SIZE_FACTOR = 4
#: what ``reader`` may be: ``None`` (the package's reader), a MONAI reader's name, class or instance.
Reader = str | type | ImageReader | None
MODALITIES = ("ultrasound", "endoscopy", "dermoscopy")
PROTOCOLS = ("default", "paper")


def _keys(with_label: bool) -> tuple[str, ...]:
    return KEYS if with_label else KEYS[:1]


def _load(
    class_colors: Mapping[Sequence[int], int] | None,
    mask_threshold: float,
    reader: Reader,
    with_label: bool,
) -> list[MapTransform]:
    """Load the image as RGB (and the mask)."""
    if reader is None:
        steps: list[MapTransform] = [LoadRGBImaged("image")]
    else:
        steps = [LoadImaged("image", reader=reader, reverse_indexing=False, ensure_channel_first=True, image_only=True)]
    if with_label:
        steps.append(LoadMaskd("label", threshold=mask_threshold, class_colors=class_colors))
    return [*steps, EnsureRGBd("image")]


def _shrink(spatial_size: Sequence[int] | None, keys: tuple[str, ...]) -> list[MapTransform]:
    """With a ``spatial_size``, shrink images larger than the working size (invertibly; masks nearest)."""
    if spatial_size is None:
        return []
    max_size = WORK_SIZE_FACTOR * max(int(s) for s in spatial_size)
    return [ShrinkLongestd(keys, max_size, mode=("area", "nearest")[: len(keys)])]


def _to_model_input(spatial_size: Sequence[int] | None, keys: tuple[str, ...]) -> list[MapTransform]:
    """Scale to 0..1, then resize to ``spatial_size`` (masks nearest) or pad to a multiple of the patch size."""
    steps: list[MapTransform] = [ScaleIntensityRanged("image", 0.0, 255.0, 0.0, 1.0, clip=True)]
    if spatial_size is None:
        steps.append(DivisiblePadd(keys, k=PATCH_SIZE))
    else:
        modes, antialias = ("bilinear", "nearest")[: len(keys)], (True, False)[: len(keys)]
        steps.append(Resized(keys, tuple(spatial_size), mode=modes, anti_aliasing=antialias))
    return steps


def _geometric(
    vertical_flip: bool, rotate90: bool, rotate_degrees: float, keys: tuple[str, ...] = KEYS
) -> list[MapTransform]:
    """Geometric augmentations drawn once per sample and applied to image and mask alike (mask nearest)."""
    steps: list[MapTransform] = [RandFlipd(keys, prob=0.5, spatial_axis=1)]
    if vertical_flip:
        steps.append(RandFlipd(keys, prob=0.5, spatial_axis=0))
    if rotate90:
        steps.append(RandRotate90d(keys, prob=0.5, max_k=3))
    angle = float(np.deg2rad(rotate_degrees))
    steps.append(
        RandAffined(
            keys,
            prob=0.5,
            rotate_range=(angle,),
            scale_range=(0.1, 0.1),
            mode=("bilinear", "nearest")[: len(keys)],
            padding_mode="zeros",
        )
    )
    return steps


def _finish(label_dtype: torch.dtype, keys: tuple[str, ...]) -> list[MapTransform]:
    return [imagenet_normalize("image"), EnsureTyped(keys, dtype=(torch.float32, label_dtype)[: len(keys)])]


def ultrasound_transforms(
    spatial_size: Sequence[int] | None = (256, 256),
    crop_region: bool = True,
    clahe: bool = False,
    class_colors: Mapping[Sequence[int], int] | None = None,
    mask_threshold: float = 127,
    label_dtype: torch.dtype = torch.float32,
    reader: Reader = None,
    with_label: bool = True,
) -> tuple[Compose, Compose]:
    """Ultrasound (train, eval) pipelines (breast, thyroid, ...).

    Clean-ups: grey to RGB, crop to the image region (DICOM regions, else detected), optional CLAHE. Train
    augmentations: horizontal flips only (the transducer is always at the top), small rotations and scaling,
    speckle noise, gain and gamma.

    Args:
        spatial_size: model input size; ``None`` keeps the cropped size, padded to a multiple of 16.
        crop_region: crop to the ultrasound image region.
        clahe: apply CLAHE.
        class_colors: RGB class colours of the masks (e.g. BUSI ``{(0, 255, 0): 1, (255, 0, 0): 2}``) for class
            indices; ``None`` reads masks as binary.
        mask_threshold: binary mask threshold on 0..255.
        label_dtype: dtype of the output label.
        reader: MONAI image reader (name, class or instance); ``None``: :class:`SegDINOImageReader`.
        with_label: load and transform the ``label`` too; ``False`` for inference on images alone.

    Returns:
        ``(train, eval)`` composed transforms.
    """
    keys = _keys(with_label)
    clean: list[MapTransform] = _load(class_colors, mask_threshold, reader, with_label)
    if crop_region:  # before shrinking: a DICOM file's region is in its own pixels
        clean.append(UltrasoundRegionCropd(keys))
    clean += _shrink(spatial_size, keys)
    if clahe:
        clean.append(CLAHEd("image"))
    clean += _to_model_input(spatial_size, keys)
    augment = _geometric(vertical_flip=False, rotate90=False, rotate_degrees=10.0, keys=keys) + [
        RandSpeckleNoised("image", prob=0.5),
        RandScaleIntensityd("image", factors=0.2, prob=0.5),
        RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.5),
    ]
    return Compose(clean + augment + _finish(label_dtype, keys)), Compose(clean + _finish(label_dtype, keys))


def endoscopy_transforms(
    spatial_size: Sequence[int] | None = (256, 256),
    crop_border: bool = True,
    remove_specular: bool = False,
    mask_threshold: float = 127,
    label_dtype: torch.dtype = torch.float32,
    reader: Reader = None,
    with_label: bool = True,
) -> tuple[Compose, Compose]:
    """Endoscopy (train, eval) pipelines (colonoscopy polyps, ...).

    Clean-ups: crop of the black frame and corners, optional specular-highlight inpainting. Train augmentations:
    flips in both directions and 90-degree rotations (a scope has no up), rotations and scaling, colour jitter.

    Args:
        spatial_size: model input size; ``None`` keeps the cropped size, padded to a multiple of 16.
        crop_border: crop the black frame and corners.
        remove_specular: inpaint specular highlights.
        mask_threshold: binary mask threshold on 0..255 (JPEG masks are noisy).
        label_dtype: dtype of the output label.
        reader: MONAI image reader (name, class or instance); ``None``: :class:`SegDINOImageReader`.
        with_label: load and transform the ``label`` too; ``False`` for inference on images alone.

    Returns:
        ``(train, eval)`` composed transforms.
    """
    keys = _keys(with_label)
    clean: list[MapTransform] = _load(None, mask_threshold, reader, with_label) + _shrink(spatial_size, keys)
    if crop_border:
        clean.append(EndoscopyBorderCropd(keys))
    if remove_specular:
        clean.append(SpecularHighlightRemovald("image"))
    clean += _to_model_input(spatial_size, keys)
    augment = _geometric(vertical_flip=True, rotate90=True, rotate_degrees=15.0, keys=keys) + [
        RandColorJitterd("image", prob=0.5, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03),
    ]
    return Compose(clean + augment + _finish(label_dtype, keys)), Compose(clean + _finish(label_dtype, keys))


def dermoscopy_transforms(
    spatial_size: Sequence[int] | None = (256, 256),
    crop_vignette: bool = True,
    hair_removal: bool = True,
    color_constancy: bool = True,
    shades_of_gray_power: float = 6.0,
    mask_threshold: float = 127,
    label_dtype: torch.dtype = torch.float32,
    reader: Reader = None,
    with_label: bool = True,
) -> tuple[Compose, Compose]:
    """Dermoscopy (train, eval) pipelines (skin lesions).

    Clean-ups: crop of the dark vignette, hair removal, Shades of Gray colour constancy. Train augmentations:
    flips, 90-degree and free rotations (a lesion photo has no up), scaling, mild colour jitter.

    Args:
        spatial_size: model input size; ``None`` keeps the cropped size, padded to a multiple of 16.
        crop_vignette: crop the dark round vignette.
        hair_removal: remove hair (black-hat + inpainting).
        color_constancy: apply Shades of Gray.
        shades_of_gray_power: the Minkowski norm of Shades of Gray.
        mask_threshold: binary mask threshold on 0..255.
        label_dtype: dtype of the output label.
        reader: MONAI image reader (name, class or instance); ``None``: :class:`SegDINOImageReader`.
        with_label: load and transform the ``label`` too; ``False`` for inference on images alone.

    Returns:
        ``(train, eval)`` composed transforms.
    """
    keys = _keys(with_label)
    clean: list[MapTransform] = _load(None, mask_threshold, reader, with_label) + _shrink(spatial_size, keys)
    if crop_vignette:
        clean.append(DermoscopyVignetteCropd(keys))
    if hair_removal:
        clean.append(HairRemovald("image"))
    clean += _to_model_input(spatial_size, keys)
    if color_constancy:
        clean.append(ShadesOfGrayd("image", power=shades_of_gray_power))
    augment = _geometric(vertical_flip=True, rotate90=True, rotate_degrees=30.0, keys=keys) + [
        RandColorJitterd("image", prob=0.5, brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02),
    ]
    return Compose(clean + augment + _finish(label_dtype, keys)), Compose(clean + _finish(label_dtype, keys))


def paper_transforms(
    spatial_size: Sequence[int] = (256, 256),
    mask_threshold: float = 127,
    label_dtype: torch.dtype = torch.float32,
    reader: Reader = None,
    with_label: bool = True,
) -> tuple[Compose, Compose]:
    """The SegDINO paper's pipelines, as in its reference code (``dataset.py``); train and eval are the same.

    The image is read as RGB (grey repeated to three channels, alpha dropped), resized straight to
    ``spatial_size`` with Pillow's bicubic filter (antialiased, 8-bit, see :class:`PILResized`), scaled to 0..1
    and normalised with the ImageNet statistics. The mask is binarised at ``mask_threshold`` (foreground above
    127: grey level 128 and up, the reference's ``> 0.5`` on 0..1) and resized with Pillow's nearest filter.
    No modality clean-up and no augmentation. Not invertible: the paper scores at ``spatial_size``.

    Args:
        spatial_size: model input ``(height, width)``.
        mask_threshold: binary mask threshold on 0..255 (foreground is strictly above it).
        label_dtype: dtype of the output label.
        reader: MONAI image reader (name, class or instance); ``None``: :class:`SegDINOImageReader`.
        with_label: load and transform the ``label`` too; ``False`` for images alone.

    Returns:
        ``(train, eval)`` composed transforms: two equal, deterministic pipelines.

    Raises:
        ValueError: when ``spatial_size`` is ``None``: the protocol resizes to a fixed size.
    """
    if spatial_size is None:
        raise ValueError("the paper protocol resizes to a fixed spatial_size; native-size inputs are not part of it")
    keys = _keys(with_label)

    def pipeline() -> Compose:
        steps = _load(None, mask_threshold, reader, with_label)
        steps += [
            PILResized(keys, spatial_size, mode=("bicubic", "nearest")[: len(keys)]),
            ScaleIntensityRanged("image", 0.0, 255.0, 0.0, 1.0, clip=True),
        ]
        return Compose(steps + _finish(label_dtype, keys))

    return pipeline(), pipeline()


def get_transforms(modality: str, protocol: str = "default", **kwargs: object) -> tuple[Compose, Compose]:
    """The (train, eval) pipelines of a modality, or of the paper's protocol.

    Args:
        modality: ``"ultrasound"``, ``"endoscopy"`` or ``"dermoscopy"``.
        protocol: ``"default"``, the modality's pipelines; ``"paper"``, :func:`paper_transforms` whatever the
            modality.
        kwargs: keyword arguments of that function.

    Returns:
        ``(train, eval)`` composed transforms.
    """
    builders = {
        "ultrasound": ultrasound_transforms,
        "endoscopy": endoscopy_transforms,
        "dermoscopy": dermoscopy_transforms,
    }
    if modality not in builders:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    builder = paper_transforms if protocol == "paper" else builders[modality]
    return builder(**kwargs)  # type: ignore[operator]
