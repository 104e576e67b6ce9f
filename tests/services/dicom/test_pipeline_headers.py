"""The DICOM pipeline's header and report probes: a bad file reads as "no header", a bug is not hidden."""

from __future__ import annotations

import os

import pydicom
import pytest

from segdino_monai.services import dicom_inputs as pipeline


def test_header_of_a_bad_file_is_none_and_a_bug_propagates(tmp_path, monkeypatch):
    (tmp_path / "random.dcm").write_bytes(os.urandom(3000))
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "folder.dcm").mkdir()
    assert pipeline.dicom_header(tmp_path / "folder.dcm") is None  # IsADirectoryError: no header
    for name in ("empty.dcm", "random.dcm"):  # read as an empty data set (force=True) or refused: no exception
        header = pipeline.dicom_header(tmp_path / name)
        assert header is None or "Rows" not in header

    def bug(*args, **kwargs):
        raise TypeError("a bug in the reader")

    monkeypatch.setattr(pydicom, "dcmread", bug)
    with pytest.raises(TypeError, match="a bug in the reader"):
        pipeline.dicom_header(tmp_path / "random.dcm")


def test_report_source_of_a_missing_or_foreign_report_is_none(tmp_path):
    assert pipeline.report_source(tmp_path / "none.json") is None
    for text in ("not json", "[1, 2]", '{"other": 1}', "\udcff"):
        (tmp_path / "r.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        assert pipeline.report_source(tmp_path / "r.json") is None
    (tmp_path / "r.json").write_text('{"source_file": "/data/a.dcm"}')
    assert pipeline.report_source(tmp_path / "r.json") == "/data/a.dcm"
