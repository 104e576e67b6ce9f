from __future__ import annotations

from segdino_monai.transforms.color import RandColorJitter, RandColorJitterd, ShadesOfGray, ShadesOfGrayd
from segdino_monai.transforms.compose import OneThreadCompose, one_thread
from segdino_monai.transforms.crop import BoxCrop, BoxCropd
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
from segdino_monai.transforms.intensity import IMAGENET_MEAN, IMAGENET_STD, EnsureRGB, EnsureRGBd, imagenet_normalize
from segdino_monai.transforms.post import SaveSegmentationd, prediction_postprocessing, to_onehot_for_metrics
from segdino_monai.transforms.spatial import PATCH_SIZE, PILResized, ShrinkLongestd
from segdino_monai.transforms.temporal import TemporalSmoothd, TemporalSmoother, frame_position
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
from segdino_monai.transforms.uncertainty import SaveUncertaintyd
from segdino_monai.transforms.utility import Switchable
from segdino_monai.utils.naming import OUTPUT_NAME_KEY, output_names, with_output_names

__all__ = [
    "OUTPUT_NAME_KEY",
    "SaveSegmentationd",
    "SaveUncertaintyd",
    "output_names",
    "prediction_postprocessing",
    "to_onehot_for_metrics",
    "with_output_names",
    "CLAHE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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
    "PILResized",
    "RandColorJitter",
    "RandColorJitterd",
    "RandSpeckleNoise",
    "RandSpeckleNoised",
    "ShadesOfGray",
    "ShadesOfGrayd",
    "SpecularHighlightRemoval",
    "ShrinkLongestd",
    "SpecularHighlightRemovald",
    "Switchable",
    "OneThreadCompose",
    "one_thread",
    "TemporalSmoothd",
    "TemporalSmoother",
    "UltrasoundRegionCrop",
    "UltrasoundRegionCropd",
    "hair_mask",
    "frame_position",
    "imagenet_normalize",
    "specular_highlight_mask",
    "ultrasound_region_from_dicom",
]
