"""A person's SEG as a final label (``segdino_monai.apps.monailabel.person_seg``): which SEGs count, and their masks.

The SEGs are made as OHIF 3.13 stores an annotator's (``tests/apps/ohif_seg.py``): LABELMAP in RLE Lossless and
BINARY in Explicit VR Little Endian, MANUAL, Manufacturer "Unspecified", a one-valued PixelSpacing; the model's own
SEG (``segdino dicom``'s writer, AUTOMATIC) never counts.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from segdino_monai.apps.monailabel.person_seg import label_from_seg, made_by_person, newest_key, referenced_series

pytest.importorskip("highdicom")

from tests.apps.ohif_seg import ohif_seg  # noqa: E402

RGB = "us/pydicom__pydicom/examples_rgb_color.dcm"  # 320 x 240, RGB


def _roundtrip(seg: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture
def source(dicom_dir) -> pydicom.Dataset:
    return pydicom.dcmread(dicom_dir / RGB)


def _mask(source: pydicom.Dataset, two: bool = False) -> np.ndarray:
    mask = np.zeros((source.Rows, source.Columns), np.uint8)
    mask[30:90, 50:170] = 1
    if two:
        mask[150:200, 10:40] = 2
    return mask


@pytest.mark.parametrize("labelmap", [True, False], ids=["labelmap-rle", "binary-explicit"])
@pytest.mark.parametrize("two", [False, True], ids=["one-segment", "two-segments"])
def test_an_ohif_seg_is_a_persons_label_pixel_for_pixel(dicom_dir, source, labelmap, two):
    seg = _roundtrip(ohif_seg(dicom_dir / RGB, _mask(source, two), labelmap=labelmap))
    assert seg.SOPClassUID == ("1.2.840.10008.5.1.4.1.1.66.7" if labelmap else "1.2.840.10008.5.1.4.1.1.66.4")
    assert str(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing) == "0.5"
    assert made_by_person(seg)
    assert referenced_series(seg) == {source.SeriesInstanceUID}
    label = label_from_seg(seg, source.SOPInstanceUID, (source.Rows, source.Columns))
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, _mask(source, two))
    with pytest.raises(ValueError, match="no frame of the SEG is of the image"):
        label_from_seg(seg, "1.2.3", (source.Rows, source.Columns))
    with pytest.raises(ValueError, match="the image 10 x 10"):
        label_from_seg(seg, source.SOPInstanceUID, (10, 10))


def test_the_models_seg_is_not_a_persons_but_our_final_label_is(dicom_dir, source, tmp_path):
    from PIL import Image

    from segdino_monai.apps.monailabel.label_seg import write_label_seg
    from segdino_monai.dicom.seg import SegOptions, write_seg

    model = pydicom.dcmread(write_seg(dicom_dir / RGB, _mask(source), tmp_path / "model.dcm", SegOptions()))
    assert model.Manufacturer == "segdino-monai" and model.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert not made_by_person(model)
    Image.fromarray(_mask(source)).save(tmp_path / "label.png")
    final = pydicom.dcmread(write_label_seg(dicom_dir / RGB, tmp_path / "label.png", tmp_path / "final.dcm"))
    assert final.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert made_by_person(final)
    # another creator: counts unless AUTOMATIC; our Manufacturer without a person's segment never
    other = ohif_seg(dicom_dir / RGB, _mask(source), algorithm="AUTOMATIC")
    assert not made_by_person(other)
    for item in other.SegmentSequence:
        del item.SegmentAlgorithmType
    assert made_by_person(other)
    other.Manufacturer = "segdino-monai"
    assert not made_by_person(other)


def test_the_newest_seg_sorts_last():
    older, newer, later_number = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
    older.SeriesDate, older.SeriesTime = "20261207", "235959.5"
    newer.SeriesDate, newer.SeriesTime = "20261208", "0102"
    later_number.SeriesDate, later_number.SeriesTime, later_number.InstanceNumber = "20261208", "010200", 2
    assert sorted([later_number, newer, older], key=newest_key) == [older, newer, later_number]
