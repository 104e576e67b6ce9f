from __future__ import annotations

from segdino_monai.transforms.color import RandColorJitter, RandColorJitterd, ShadesOfGray, ShadesOfGrayd
from segdino_monai.transforms.common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PATCH_SIZE,
    BoxCrop,
    BoxCropd,
    EnsureRGB,
    EnsureRGBd,
    imagenet_normalize,
)
from segdino_monai.transforms.dermoscopy import (
    DermoscopyVignetteCrop,
    DermoscopyVignetteCropd,
    HairRemoval,
    HairRemovald,
    hair_mask,
)
from segdino_monai.transforms.endoscopy import (
    EndoscopyBorderCrop,
    EndoscopyBorderCropd,
    SpecularHighlightRemoval,
    SpecularHighlightRemovald,
    specular_highlight_mask,
)
from segdino_monai.transforms.post import SaveSegmentationd, prediction_postprocessing, to_onehot_for_metrics
from segdino_monai.transforms.presets import (
    MODALITIES,
    dermoscopy_transforms,
    endoscopy_transforms,
    get_transforms,
    ultrasound_transforms,
)
from segdino_monai.transforms.ultrasound import (
    CLAHE,
    ULTRASOUND_REGION_KEY,
    CLAHEd,
    RandSpeckleNoise,
    RandSpeckleNoised,
    UltrasoundRegionCrop,
    UltrasoundRegionCropd,
    ultrasound_region_from_dicom,
)

__all__ = [
    "SaveSegmentationd",
    "prediction_postprocessing",
    "to_onehot_for_metrics",
    "CLAHE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODALITIES",
    "PATCH_SIZE",
    "ULTRASOUND_REGION_KEY",
    "BoxCrop",
    "BoxCropd",
    "CLAHEd",
    "DermoscopyVignetteCrop",
    "DermoscopyVignetteCropd",
    "EndoscopyBorderCrop",
    "EndoscopyBorderCropd",
    "EnsureRGB",
    "EnsureRGBd",
    "HairRemoval",
    "HairRemovald",
    "RandColorJitter",
    "RandColorJitterd",
    "RandSpeckleNoise",
    "RandSpeckleNoised",
    "ShadesOfGray",
    "ShadesOfGrayd",
    "SpecularHighlightRemoval",
    "SpecularHighlightRemovald",
    "UltrasoundRegionCrop",
    "UltrasoundRegionCropd",
    "dermoscopy_transforms",
    "endoscopy_transforms",
    "get_transforms",
    "hair_mask",
    "imagenet_normalize",
    "specular_highlight_mask",
    "ultrasound_region_from_dicom",
    "ultrasound_transforms",
]
