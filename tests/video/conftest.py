"""The DICOM tests' fixtures (the fixture files, the tiny segmenter) for the video tests."""

from __future__ import annotations

from tests.dicom.conftest import decoder_checkpoint, dicom_dir, segmenter_factory

__all__ = ["decoder_checkpoint", "dicom_dir", "segmenter_factory"]
