"""A cine's frames are read from the file one at a time: memory bounded by a frame, never the whole video (issue 15).

The peak is measured with ``tracemalloc`` (numpy traces its buffers there) while every frame of a synthetic 94 MB
uncompressed cine is read through :class:`DicomReader` and through :class:`DicomCine`; the frames are then compared
with pydicom's decode of the whole pixel data. Compressed cines (the JPEG fixture and an RLE cine made from its
frames) give the frames of the whole-file decode, and a truncated cine still gives the clear error naming it.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from segdino_monai.io.dicom_cine import CineFrameError
from segdino_monai.io.dicom_reader import DicomReader, DicomReadError, _deferred_pixel_data, read_dicom
from segdino_monai.services.cine import DicomCine

FRAMES, ROWS, COLUMNS = 120, 512, 512
DECODED_FRAME = 3 * ROWS * COLUMNS * 4  # one frame as the reader gives it: (3, H, W) float32, 3.1 MB
JPEG_CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30 frames of 240 x 320, JPEG baseline YBR_FULL_422


def _write_cine(path: Path, frames: np.ndarray, syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``(F, H, W, 3)`` uint8 RGB frames as a multi-frame ultrasound DICOM (RLE Lossless compressed if asked)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = frames.shape[1], frames.shape[2], len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = 33.333
    ds.PixelData = frames.tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax, frames)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def cine(tmp_path_factory) -> Path:
    """A 120-frame 512 x 512 RGB uncompressed cine of random pixels: 94 MB of pixel data."""
    frames = np.random.default_rng(0).integers(0, 256, (FRAMES, ROWS, COLUMNS, 3), dtype=np.uint8)
    return _write_cine(tmp_path_factory.mktemp("cine") / "cine.dcm", frames)


def _full_decode(path: Path) -> np.ndarray:
    """``(F, H, W, 3)`` frames from pydicom's decode of the whole pixel data (YBR converted to RGB)."""
    return pydicom.dcmread(path).pixel_array


def test_reader_reads_a_cine_frame_by_frame_with_memory_bounded_by_a_frame(cine):
    got = np.zeros((FRAMES, ROWS, COLUMNS, 3), np.uint8)  # allocated before tracing: only the reading is measured
    reader = DicomReader()
    tracemalloc.start()
    try:
        for number in range(1, FRAMES + 1):
            reader.frame = number
            array, meta = reader.get_data(reader.read(cine))
            assert array.shape == (3, ROWS, COLUMNS) and meta["frame_numbers"] == [number]
            got[number - 1] = np.moveaxis(array, 0, -1)  # 0..255 integers: exact in uint8
            del array
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert meta["decoder"] == "pydicom:native" and meta["number_of_frames"] == FRAMES
    assert _deferred_pixel_data(reader._cached[1]) is not None  # the kept data set never held the pixel data
    # the whole pixel data is 94 MB (30 decoded frames); before, the reader's data set held all of it
    assert peak < 4 * DECODED_FRAME, f"peak {peak / 1e6:.1f} MB"
    assert np.array_equal(got, _full_decode(cine))  # (np.testing's comparison takes seconds on 94 MB)


def test_dicom_cine_frames_keep_memory_bounded_by_a_frame(cine, segmenter_factory):
    chosen = range(0, FRAMES, 8)  # the peak does not depend on how many frames are read: 15 of them, spread out
    got = np.zeros((len(chosen), ROWS, COLUMNS, 3), np.uint8)
    video = DicomCine(cine, segmenter_factory("ultrasound"))
    tracemalloc.start()
    try:
        for k, (frame, _, rgb, data) in enumerate(video.frames(0, None, 8)):
            assert frame == chosen[k] and data["image"].meta["frame_numbers"] == [frame + 1]
            got[k] = rgb
            del rgb, data
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        video.close()
    assert k == len(chosen) - 1
    # the loader's transforms copy the frame a few times (13 MB measured), still a fraction of the 94 MB cine
    assert peak < 6 * DECODED_FRAME, f"peak {peak / 1e6:.1f} MB"
    assert np.array_equal(got, _full_decode(cine)[list(chosen)])


def test_compressed_cines_give_the_frames_of_the_whole_file_decode(dicom_dir, tmp_path):
    jpeg = dicom_dir / JPEG_CINE
    rle = _write_cine(tmp_path / "rle.dcm", _full_decode(jpeg), RLELossless)  # the fixture's frames, lossless
    for path, before in ((jpeg, read_dicom(jpeg).numpy()), (rle, np.moveaxis(_full_decode(rle), -1, 0))):
        reader = DicomReader()
        for number in (1, 2, 17, 30):
            reader.frame = number
            array, meta = reader.get_data(reader.read(path))
            # the JPEG cine: as read_dicom decodes the whole pixel data (the reader's frames before this change)
            np.testing.assert_array_equal(array, before[:, number - 1], err_msg=f"{path.name} frame {number}")
        assert _deferred_pixel_data(reader._cached[1]) is not None, path.name  # decoded from the file
        syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert meta["transfer_syntax"] == str(syntax), path.name


def test_truncated_cine_is_refused_naming_the_file_and_frame(cine, tmp_path, segmenter_factory):
    truncated = tmp_path / "truncated.dcm"
    with open(cine, "rb") as source:
        truncated.write_bytes(source.read(cine.stat().st_size - 5 * ROWS * COLUMNS * 3))  # the last 5 frames cut
    reader = DicomReader(frame=1)
    with pytest.raises(DicomReadError) as info:
        reader.get_data(reader.read(truncated))
    message = str(info.value)
    assert message.startswith(f"{truncated}: pixel data is {115 * ROWS * COLUMNS * 3} bytes where"), message
    assert f"needs {FRAMES * ROWS * COLUMNS * 3}: the file is truncated or damaged" in message
    video = DicomCine(truncated, segmenter_factory("ultrasound"))
    with pytest.raises(CineFrameError) as info:
        next(video.frames(0, None, 1))
    assert str(info.value).startswith(f"{truncated}: cannot decode frame 0 (DICOM frame number 1: pixel data is")


def test_cine_without_file_meta_reads_frame_by_frame_from_the_file(tmp_path):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    frames = np.random.default_rng(1).integers(0, 256, (4, 128, 96, 3), dtype=np.uint8)  # 147 kB: left in the file
    ds = pydicom.dcmread(_write_cine(tmp_path / "cine.dcm", frames))
    buffer = DicomBytesIO()  # the dataset body alone: no preamble, no DICM, no file meta (old ACR-NEMA style)
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(buffer.getvalue())
    reader = DicomReader()
    for number in (4, 1, 3):
        reader.frame = number
        array, _ = reader.get_data(reader.read(bare))
        assert np.array_equal(np.moveaxis(array, 0, -1), frames[number - 1]), number
    assert _deferred_pixel_data(reader._cached[1]) is not None
