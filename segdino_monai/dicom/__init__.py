"""DICOM in, segmentation out: reading DICOM images, writing DICOM SEG and other outputs, the batch pipeline.

Importing this package needs only pydicom (2.4 or 3) and ITK; highdicom and pydicom-3-only functions are imported
inside the functions that need them (SEG writing), so the MONAI Label environment can import it too.
"""

from __future__ import annotations

from segdino_monai.dicom.reader import (
    DICOM_SUFFIXES,
    ITK_EXTENSIONS,
    DicomReader,
    DicomReadError,
    check_image_dataset,
    image_shape,
    is_dicom_file,
    is_itk_file,
    pixel_size_mm,
    read_dicom,
    read_header,
    read_itk,
    ultrasound_region_from_dicom,
)
from segdino_monai.dicom.regions import ULTRASOUND_REGION_KEY, UltrasoundRegion, ultrasound_region

__all__ = [
    "DICOM_SUFFIXES",
    "ITK_EXTENSIONS",
    "ULTRASOUND_REGION_KEY",
    "DicomReadError",
    "DicomReader",
    "UltrasoundRegion",
    "check_image_dataset",
    "image_shape",
    "is_dicom_file",
    "is_itk_file",
    "pixel_size_mm",
    "read_dicom",
    "read_header",
    "read_itk",
    "ultrasound_region",
    "ultrasound_region_from_dicom",
]
