"""DICOM SEG of a multi-frame source without a frame of reference (ultrasound cine, video endoscopy).

The standard allows it: the Frame of Reference module of the Segmentation IOD is required only when the Derivation
Image Functional Group is absent (PS3.3 A.51.3, Table A.51-1), and without a Frame of Reference "each pixel of the
segmentation shall correspond to a pixel in a referenced image, using the Derivation Image Functional Group"
(PS3.3 A.51.5.1). highdicom (0.28) encodes this for a single source frame only ("Only a single frame is supported
when the source image has no Frame of Reference UID", ``highdicom/image.py``; highdicom issues 159, 284): it needs
a dimension to index frames by, and the spatial ones (plane positions) do not exist here.

So highdicom writes the SEG of the first source frame, from a single-frame view of the source, and that SEG is
extended here with pydicom to every frame:

- one SEG frame per segment (BINARY) or one per source frame (LABELMAP) and source frame, in source frame order;
- each SEG frame's Derivation Image Sequence references its source frame by Referenced Frame Number (PS3.3
  C.7.6.16.2.6, Table C.7.6.16-7; Referenced Frame Number is Type 1C there, required as not all frames of the
  multi-frame source are referenced by one SEG frame), with the purpose and derivation codes of A.51.5.1;
- the frames are indexed by a second dimension, Temporal Position Index (0020,9128) in the Frame Content Sequence
  (PS3.3 C.7.6.16.2.2 Frame Content Macro; C.7.6.17 Multi-frame Dimension module: its Dimension Index Pointer and
  Functional Group Pointer point at it), whose value is the source frame number: the frames of a cine are its temporal
  positions in order (C.7.6.5, C.7.6.6.1.2 Frame Increment Pointer). Dimension Index Values (C.7.6.16.2.2) then
  hold (segment or label index, frame index);
- the SEG references the source's own SOP class, instance and series (Common Instance Reference module C.12.2,
  required with the Derivation Image Functional Group, Table A.51-1), never those of the view;
- the pixel data holds every frame, BINARY frames bit-packed one after another without padding between frames
  (PS3.5 8.1.1, 8.2).

dciodvfy finds no error in these SEGs and highdicom reads them back (``get_pixels_by_source_frame``) to the masks
written (tests/dicom/test_seg_frames.py).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = ["TEMPORAL_POSITION_INDEX", "frame_referenced_segmentation", "needs_frame_references"]

#: (0020,9128) Temporal Position Index and (0020,9111) Frame Content Sequence, its functional group.
TEMPORAL_POSITION_INDEX = 0x00209128
_FRAME_CONTENT_SEQUENCE = 0x00209111
#: a single-frame image SOP class whose IOD has no mandatory Frame of Reference (Secondary Capture Image Storage,
#: PS3.3 A.8.1): what highdicom is told the view of one source frame is, so it builds a single-frame SEG.
_SINGLE_FRAME_VIEW_CLASS = "1.2.840.10008.5.1.4.1.1.7"
_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def needs_frame_references(ds: Any) -> bool:
    """Whether a source is multi-frame without a spatial coordinate system, which highdicom cannot segment.

    True for cine loops and videos: more than one frame and no Frame of Reference with plane positions (a Frame of
    Reference UID without positions, as some ultrasound files have, gives no coordinate system either).
    """
    from highdicom.spatial import get_image_coordinate_system

    return int(ds.get("NumberOfFrames", 1) or 1) > 1 and get_image_coordinate_system(ds) is None


def frame_referenced_segmentation(source: Any, masks: np.ndarray, **segmentation_kwargs: Any) -> Any:
    """A ``highdicom.seg.Segmentation`` of every frame of a multi-frame source without a frame of reference.

    Args:
        source: the source dataset (original UIDs), with ``NumberOfFrames`` frames of ``Rows`` x ``Columns``.
        masks: ``(frames, rows, columns)`` class indices (0 background, 1.. segment numbers), one per source frame.
        segmentation_kwargs: the arguments of ``highdicom.seg.Segmentation`` other than ``source_images`` and
            ``pixel_array`` (segment descriptions, series and instance UIDs, ...).

    Returns:
        The SEG dataset, ready to save.

    Raises:
        ValueError: when the masks do not fit the source's frames or highdicom refuses the source.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.pixels.utils import pack_bits
    from pydicom.sequence import Sequence

    masks = np.asarray(masks, dtype=np.uint8)
    frames = int(source.NumberOfFrames)
    if masks.shape != (frames, int(source.Rows), int(source.Columns)):
        size = f"{frames} frames of {source.Rows}x{source.Columns}"
        raise ValueError(f"masks {masks.shape} do not fit the source's {size}")
    view = _single_frame_view(source)
    seg = hd.seg.Segmentation(source_images=[view], pixel_array=masks[0], **segmentation_kwargs)
    if seg.file_meta.TransferSyntaxUID != _EXPLICIT_VR_LITTLE_ENDIAN:  # the pixel data is rewritten below, uncompressed
        raise ValueError(f"frame-referenced SEG written uncompressed only, not {seg.file_meta.TransferSyntaxUID}")
    template = list(seg.PerFrameFunctionalGroupsSequence)
    shared = seg.SharedFunctionalGroupsSequence[0] if seg.get("SharedFunctionalGroupsSequence") else Dataset()
    binary = seg.SegmentationType == "BINARY"
    items, pixels = [], []
    for number in range(1, frames + 1):
        for base in template:
            item = copy.deepcopy(base)
            reference = item.DerivationImageSequence[0].SourceImageSequence[0]
            reference.ReferencedSOPClassUID = source.SOPClassUID
            reference.ReferencedFrameNumber = number
            content = item.FrameContentSequence[0]
            content.TemporalPositionIndex = number
            content.DimensionIndexValues = [*_values(content.DimensionIndexValues), number]
            items.append(item)
            if binary:
                # one segment: highdicom puts its Segment Identification in the shared functional groups
                group = item if "SegmentIdentificationSequence" in item else shared
                segment = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
                pixels.append(masks[number - 1] == segment)
            else:
                pixels.append(masks[number - 1])
    dimension = Dataset()
    dimension.DimensionOrganizationUID = seg.DimensionIndexSequence[0].DimensionOrganizationUID
    dimension.DimensionIndexPointer = TEMPORAL_POSITION_INDEX
    dimension.FunctionalGroupPointer = _FRAME_CONTENT_SEQUENCE
    dimension.DimensionDescriptionLabel = "Source frame (temporal position)"
    seg.DimensionIndexSequence.append(dimension)
    seg.PerFrameFunctionalGroupsSequence = Sequence(items)
    seg.NumberOfFrames = len(items)
    for item in seg.SourceImageSequence:
        item.ReferencedSOPClassUID = source.SOPClassUID
    for series in seg.ReferencedSeriesSequence:
        for item in series.ReferencedInstanceSequence:
            item.ReferencedSOPClassUID = source.SOPClassUID
    stack = np.stack(pixels).astype(np.uint8)
    data = pack_bits(stack) if binary else stack.tobytes()
    seg.PixelData = data + b"\0" * (len(data) % 2)
    return seg


def _single_frame_view(source: Any) -> Any:
    """A copy of the source's header that highdicom takes for a single-frame image: frame 1 stands for every frame.

    Only ``NumberOfFrames`` goes and the SOP class becomes a single-frame one (highdicom decides "multi-frame" from
    the SOP class); every reference to the view is set back to the source's own SOP class afterwards.
    """
    from pydicom.dataset import Dataset

    view = Dataset()
    view.file_meta = copy.deepcopy(getattr(source, "file_meta", Dataset()))
    for element in source:
        if element.keyword not in ("PixelData", "NumberOfFrames"):
            view.add(copy.deepcopy(element))
    view.SOPClassUID = _SINGLE_FRAME_VIEW_CLASS
    return view


def _values(value: Any) -> list[int]:
    """Dimension Index Values as a list (pydicom gives an ``int`` for one value)."""
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]
