"""MONAI Label on a PACS without the servers: the final label's SEG writer and the DICOMweb launcher options."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pydicom
import pytest
from PIL import Image

from segdino_monai.apps.monailabel import label_seg, server
from segdino_monai.cli import main

RGB = "us/pydicom__pydicom/examples_rgb_color.dcm"


@pytest.fixture
def source(fixtures_dir):
    return fixtures_dir / "dicom" / RGB


def test_label_seg_writes_the_seg_of_a_final_label(source, tmp_path):
    pytest.importorskip("highdicom")
    ds = pydicom.dcmread(source)
    label = np.zeros((ds.Rows, ds.Columns), np.uint8)
    label[10:50, 20:90] = 255  # a viewable 0/255 label is the same mask as a 0/1 one
    Image.fromarray(label).save(tmp_path / "label.png")
    assert label_seg.main([str(source), str(tmp_path / "label.png"), str(tmp_path / "seg.dcm")]) == 0
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == ds.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert (seg.SeriesDescription, seg.SeriesNumber) == ("SegDINO final label (MONAI Label)", 902)
    np.testing.assert_array_equal(seg.pixel_array, label > 0)
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"  # a person's label, not the model's mask
    # the same label saved again is the same SEG instance (a PACS that overwrites keeps one)
    assert label_seg.main([str(source), str(tmp_path / "label.png"), str(tmp_path / "again.dcm")]) == 0
    assert pydicom.dcmread(tmp_path / "again.dcm").SOPInstanceUID == seg.SOPInstanceUID


def test_label_seg_bad_label_is_exit_2_with_one_line(source, tmp_path, capsys):
    pytest.importorskip("highdicom")
    Image.fromarray(np.ones((10, 10), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "label.nii.gz").write_bytes(b"not a picture")
    assert label_seg.main([str(source), str(tmp_path / "small.png"), str(tmp_path / "a.dcm")]) == 2
    assert label_seg.main([str(source), str(tmp_path / "label.nii.gz"), str(tmp_path / "b.dcm")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "small.png does not fit the image" in lines[0]
    assert "label.nii.gz: not a 2D picture" in lines[1] and "PNG" in lines[1]
    assert not (tmp_path / "a.dcm").exists() and not (tmp_path / "b.dcm").exists()


def test_dicomweb_url_is_passed_as_it_is_with_our_search_filter(tmp_path):
    pytest.importorskip("highdicom")
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    (env / "bin" / "monailabel").write_text("")
    url = "http://127.0.0.1:8042/dicom-web"
    command = server.server_command(env, tmp_path / "app", url)
    assert ("--studies", url) in list(zip(command, command[1:], strict=False))
    variables = server.dicomweb_environment(tmp_path / "app")
    assert json.loads(variables["MONAI_LABEL_DICOMWEB_SEARCH_FILTER"]) == {"Modality": "US,ES,XC,OT"}
    assert variables["MONAI_LABEL_DICOMWEB_CACHE_PATH"] == str((tmp_path / "app" / "dicomweb-cache").resolve())
    assert variables["SEGDINO_LABEL_SEG_PYTHON"] == sys.executable
    custom = server.dicomweb_environment(tmp_path / "app", {"Modality": "US", "StudyDate": "20260101-"})
    assert json.loads(custom["MONAI_LABEL_DICOMWEB_SEARCH_FILTER"]) == {"Modality": "US", "StudyDate": "20260101-"}


@pytest.mark.parametrize(
    ("studies", "search_filter", "message"),
    [
        ("http://127.0.0.1:1/dicom-web", "[1]", "give a JSON object of QIDO-RS keys"),
        ("http://127.0.0.1:1/dicom-web", "Modality=US", "give a JSON object of QIDO-RS keys"),
        ("FOLDER", '{"Modality": "US"}', "give --studies a dicom-web URL"),
    ],
    ids=["not-an-object", "not-json", "with-a-folder"],
)
def test_search_filter_bad_input_exits_2(tmp_path, caplog, studies, search_filter, message):
    studies = str(tmp_path) if studies == "FOLDER" else studies
    args = ["label-server", "--studies", studies, "--search-filter", search_filter, "--env", str(tmp_path / "env")]
    with caplog.at_level(logging.ERROR):
        assert main([*args, "--app-dir", str(tmp_path / "app")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "--search-filter" in errors[0] and message in errors[0]
    assert not (tmp_path / "app").exists()
