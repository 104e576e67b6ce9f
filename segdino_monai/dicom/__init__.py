"""DICOM in, segmentation out: reading DICOM images, writing DICOM SEG and other outputs, the batch pipeline.

Importing this package needs only pydicom (2.4 or 3) and ITK; highdicom and pydicom-3-only functions are imported
inside the functions that need them (SEG writing), so the MONAI Label environment can import it too.
"""

from __future__ import annotations

from segdino_monai.dicom.reader import (
    ITK_EXTENSIONS,
    DicomReadError,
    LoadDicomd,
    check_image_dataset,
    is_itk_file,
    pixel_size_mm,
    read_dicom,
    read_image,
    read_itk,
)

__all__ = [
    "ITK_EXTENSIONS",
    "DicomReadError",
    "LoadDicomd",
    "check_image_dataset",
    "is_itk_file",
    "pixel_size_mm",
    "read_dicom",
    "read_image",
    "read_itk",
]
