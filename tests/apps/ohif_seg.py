"""An annotator's SEG as OHIF 3.13's segmentation mode stores it (highdicom, main environment, tests only).

OHIF Brush: SegmentAlgorithmType MANUAL, algorithm name "OHIF Brush", Manufacturer "Unspecified", a new series, the
Label Map Segmentation Storage class in RLE Lossless by default (BINARY in Explicit VR Little Endian when configured),
and a PixelSpacing of one value where the source had none.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid


def ohif_seg(source: str | Path, mask: np.ndarray, labelmap: bool = True, algorithm: str = "MANUAL") -> pydicom.Dataset:
    """The SEG of ``mask`` (class indices 0/1..) on the single-frame DICOM image ``source``."""
    ds = pydicom.dcmread(str(source))
    classes = sorted(int(value) for value in np.unique(mask) if value)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"Segment {number}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues[algorithm],
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="OHIF Brush", family=codes.DCM.ArtificialIntelligence, version="0.0.1"
            )
            if algorithm != "MANUAL"
            else None,
        )
        for number in classes
    ]
    kind = hd.seg.SegmentationTypeValues.LABELMAP if labelmap else hd.seg.SegmentationTypeValues.BINARY
    seg = hd.seg.Segmentation(
        source_images=[ds],
        pixel_array=mask.astype(np.uint8),
        segmentation_type=kind,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Unspecified",
        manufacturer_model_name="OHIF",
        software_versions="3.13",
        device_serial_number="none",
        series_description="Research Derived series",
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=[1.0, 1.0], slice_thickness=1.0),
        transfer_syntax_uid=RLELossless if labelmap else ExplicitVRLittleEndian,
        omit_empty_frames=False,
    )
    for item in seg.SegmentSequence:  # OHIF names its tool though MANUAL segments need no algorithm
        item.SegmentAlgorithmName = "OHIF Brush"
    seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = "0.5"  # OHIF's one value
    seg.PixelSpacing = "0.5"
    return seg
