"""MONAI Label on a PACS: ``segdino label-server --studies <Orthanc's dicom-web URL>``, both servers real, on loopback.

Orthanc (Debian's, with its DICOMweb plugin) holds single-frame ultrasound images; the MONAI Label server (its own
environment, see ``test_monailabel``) lists the series of our modalities, infers the bundle's mask of one, and sends a
saved final label back to Orthanc as a DICOM SEG, read back here by WADO-RS. The listing holds the source images only:
not the SEG, SC overlays and SR that ``segdino dicom --also-sc --also-sr`` wrote for one of them, not a cine, not a
series of several images; what MONAI Label 0.8.5 cannot serve is asserted as the clear 422 it gives when asked for.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tests import conftest as dicom_conftest
from tests.apps.label_server import HOST, Server, free_port, label_env, multipart, png
from tests.conftest import BUNDLE, TINY_OVERRIDES, _program
from tests.orthanc import DICOMWEB_PLUGIN, Orthanc

pytestmark = pytest.mark.slow
pytest.importorskip("dicomweb_client")

# the DICOM tests' fixtures: the fixture files, the tiny decoder and the bundle's DICOM segmenter (the reference)
dicom_dir = dicom_conftest.dicom_dir
decoder_checkpoint = dicom_conftest.decoder_checkpoint
segmenter_factory = dicom_conftest.segmenter_factory
PALETTE = "us/pydicom__pydicom/examples_palette.dcm"  # 800 x 350, palette colour
RGB = "us/pydicom__pydicom/examples_rgb_color.dcm"  # 320 x 240, RGB
PAIR = "us/pydicom__pydicom-data/color-px.dcm"  # uploaded with a copy in its series: a series of two images
ENDOSCOPY = "vl/ivmartel__dwv/nema-vl2_j2kr.dcm"  # VL endoscopy as a secondary capture (OT), JPEG 2000 lossless
OTHER = "us/pydicom__pydicom/ExplVR_BigEnd.dcm"  # uploaded as an MR series: not one of our modalities
SINGLE = "us/pydicom__pydicom-data/OBXXXX1A_rle.dcm"  # new UIDs; with segdino dicom's SEG, SC and SR (pixel size)
CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30-frame ultrasound cine, one instance
RETRAIN = {
    "retrain_every": 1,
    "retrain_epochs": 1,
    "retrain_val_split": 0.5,
}  # every new final label (saved, or a person's SEG) retrains


def _uid(ds: pydicom.Dataset, keyword: str) -> str:
    return str(getattr(ds, keyword))


@pytest.fixture(scope="module")
def orthanc(dicom_dir, tmp_path_factory):
    binary = _program("Orthanc", "orthanc", "MONAI Label on a PACS is not tested")
    if not DICOMWEB_PLUGIN.is_file():
        if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"SEGDINO_REQUIRE_FIXTURES=1 but {DICOMWEB_PLUGIN} (Debian orthanc-dicomweb) is missing")
        pytest.skip(f"{DICOMWEB_PLUGIN} missing (apt-get install orthanc-dicomweb): MONAI Label on a PACS not tested")
    folder = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(binary, folder, {}, dicomweb=True)
    server.start()
    for name in (PALETTE, RGB, PAIR, ENDOSCOPY):
        server.upload(dicom_dir / name)
    second = pydicom.dcmread(dicom_dir / PAIR)
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    second.InstanceNumber = int(second.get("InstanceNumber", 1) or 1) + 1
    second.save_as(folder / "second.dcm")
    server.upload(folder / "second.dcm")
    other = pydicom.dcmread(dicom_dir / OTHER)
    other.Modality = "MR"
    other.StudyInstanceUID, other.SeriesInstanceUID = generate_uid(), generate_uid()
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    other.save_as(folder / "mr.dcm")
    server.upload(folder / "mr.dcm")
    server.upload(dicom_dir / CINE)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def results(orthanc, dicom_dir, decoder_checkpoint, tmp_path_factory) -> dict[str, str]:
    """A single-frame image and what ``segdino dicom --also-sc --also-sr`` wrote for it, in Orthanc: ``{Modality of
    the result (SEG, OT, SR) or "US" for the source: SeriesInstanceUID}``."""
    from segdino_monai.cli import main

    folder = tmp_path_factory.mktemp("results")
    single = pydicom.dcmread(dicom_dir / SINGLE)  # its fixture file shares the palette image's UIDs
    single.StudyInstanceUID, single.SeriesInstanceUID = generate_uid(), generate_uid()
    single.SOPInstanceUID = single.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    single.save_as(folder / "single.dcm")
    sets = [a for k, v in TINY_OVERRIDES.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    args = ["dicom", str(folder / "single.dcm"), "-o", str(folder / "out"), "--bundle-root", str(BUNDLE)]
    args += ["--backbone-weights", "random", "--checkpoint", str(decoder_checkpoint), "--modality", "ultrasound"]
    assert main([*args, "--no-progress", "--also-sc", "--also-sr", *sets]) == 0
    found = {"US": single.SeriesInstanceUID}
    orthanc.upload(folder / "single.dcm")
    for path in sorted((folder / "out").rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[str(ds.Modality)] = str(ds.SeriesInstanceUID)
        orthanc.upload(path)
    assert sorted(found) == ["OT", "SEG", "SR", "US"], found
    return found


@pytest.fixture(scope="module")
def label_server(orthanc, results, decoder_checkpoint, tmp_path_factory):
    env = label_env()
    work = tmp_path_factory.mktemp("label")
    bundle = work / "bundle"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("eval", "*.pt", "*.pth"))
    shutil.copy(decoder_checkpoint, bundle / "models" / "model.pt")
    sets = [
        f"{key}={json.dumps(value)}" for key, value in {**TINY_OVERRIDES, **RETRAIN, "modality": "ultrasound"}.items()
    ]
    args = [
        "--studies", orthanc.dicomweb_url, "--host", HOST, "--env", str(env), "--app-dir", str(work / "app"),
        "--bundle-root", str(bundle), "--backbone-weights", "random", *[a for s in sets for a in ("--set", s)],
    ]  # fmt: skip
    previous = os.environ.get("MONAI_LABEL_DICOMWEB_CACHE_EXPIRY")
    os.environ["MONAI_LABEL_DICOMWEB_CACHE_EXPIRY"] = "1"  # the label count is read again a second later
    try:
        srv = Server(args, work / "server.log", free_port())
        try:
            srv.wait_ready()
            yield srv
        finally:
            srv.stop()
    finally:
        if previous is None:
            os.environ.pop("MONAI_LABEL_DICOMWEB_CACHE_EXPIRY")
        else:
            os.environ["MONAI_LABEL_DICOMWEB_CACHE_EXPIRY"] = previous


def _infer(server: Server, image: str):
    query = urllib.parse.urlencode({"image": image, "output": "image"})
    body, headers = multipart({"params": json.dumps({})}, None)
    return server.request("POST", f"/infer/segdino?{query}", body, headers)


def _save_label(server: Server, image: str, mask: np.ndarray):
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    body, headers = multipart({"params": json.dumps({})}, ("label.png", buffer.getvalue()))
    body = body.replace(b'name="file"', b'name="label"')
    query = urllib.parse.urlencode({"image": image, "tag": "final"})
    return server.request("PUT", f"/datastore/label?{query}", body, headers)


def _stats(server: Server) -> dict:
    status, _, body = server.request("GET", "/datastore/")
    assert status == 200, body[:500]
    return json.loads(body)


def _segs(orthanc: Orthanc, image: str) -> list[pydicom.Dataset]:
    """Every SEG in Orthanc of the series ``image``, by QIDO-RS and WADO-RS."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb_url)
    segs = []
    for series in client.search_for_series(search_filters={"Modality": "SEG"}):
        study, series_uid = series["0020000D"]["Value"][0], series["0020000E"]["Value"][0]
        for item in client.search_for_instances(study, series_uid):
            segs.append(client.retrieve_instance(study, series_uid, item["00080018"]["Value"][0]))
    return [seg for seg in segs if seg.ReferencedSeriesSequence[0].SeriesInstanceUID == image]


def test_datastore_lists_the_source_images_of_our_modalities(label_server, results, dicom_dir):
    # palette, rgb and the single-frame image are US, the endoscopy image OT (a secondary capture, not ours); left out:
    # the MR series (MONAI Label's default filter would list CT only), the two-instance series, the cine, and the SEG,
    # SC (OT) and SR of the single-frame image; "completed" 0: the model's own (AUTOMATIC) SEG labels no image
    assert _stats(label_server) == {"total": 4, "completed": 0, "label_tags": {}}
    status, _, body = label_server.request("POST", "/activelearning/first", b"{}", {"Content-Type": "application/json"})
    assert status == 200, body[:500]
    unlabelled = {_uid(pydicom.dcmread(dicom_dir / name), "SeriesInstanceUID") for name in (PALETTE, RGB, ENDOSCOPY)}
    assert json.loads(body)["id"] in unlabelled | {results["US"]}


def test_a_cine_and_our_results_asked_for_by_id_are_a_clear_422(label_server, results, dicom_dir):
    cine = _uid(pydicom.dcmread(dicom_dir / CINE, stop_before_pixels=True), "SeriesInstanceUID")
    expected = {
        cine: f"Series {cine} is a multi-frame image (30 frames, a cine): MONAI Label 0.8.5 serves one series as one "
        "2D image and cannot choose a frame (segment it with `segdino dicom <study URL>`)",
        results["SEG"]: f"Series {results['SEG']} holds no image to label (segmentation)",
        results["SR"]: f"Series {results['SR']} holds no image to label (structured report)",
        results["OT"]: f"Series {results['OT']} (SegDINO segmentation overlay) was written by segdino-monai: a "
        "result, not an image to label",
    }
    for series, detail in expected.items():
        status, _, body = _infer(label_server, series)
        assert (status, json.loads(body)) == (422, {"detail": detail})
    status, _, body = _save_label(label_server, cine, np.ones((10, 10), np.uint8))
    assert (status, json.loads(body)["detail"]) == (422, expected[cine])


@pytest.mark.parametrize("name", [PALETTE, RGB, ENDOSCOPY])
def test_served_mask_equals_the_bundle_inference(label_server, segmenter_factory, dicom_dir, name):
    """The served bundle runs one modality (ultrasound here); the endoscopy image checks the VL/JPEG 2000 path."""
    source = pydicom.dcmread(dicom_dir / name)
    status, kind, body = _infer(label_server, _uid(source, "SeriesInstanceUID"))
    assert status == 200, body[:500]
    assert kind == "image/png"
    reference = segmenter_factory("ultrasound")(dicom_dir / name)  # what `segdino dicom` segments
    served = png(body)
    assert served.shape == (source.Rows, source.Columns)
    np.testing.assert_array_equal(served, reference)
    assert 0 < int(served.sum()) < served.size


def test_a_series_of_several_images_is_a_clear_422(label_server, dicom_dir):
    series = _uid(pydicom.dcmread(dicom_dir / PAIR), "SeriesInstanceUID")
    status, _, body = _infer(label_server, series)
    assert status == 422, body[:500]
    assert "holds 2 instances" in json.loads(body)["detail"]
    status, _, body = _infer(label_server, "1.2.3.4.5")  # not in the PACS
    assert status == 404, body[:500]


def test_final_label_goes_back_as_a_seg(label_server, orthanc, dicom_dir):
    source = pydicom.dcmread(dicom_dir / RGB)
    image = _uid(source, "SeriesInstanceUID")
    label = np.zeros((source.Rows, source.Columns), np.uint8)
    label[40:120, 60:200] = 1
    status, _, body = _save_label(label_server, image, label)
    assert status == 200, body[:500]
    segs = _segs(orthanc, image)
    assert len(segs) == 1
    seg = segs[0]
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == image
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert seg.SeriesDescription == "SegDINO final label (MONAI Label)"
    np.testing.assert_array_equal(seg.pixel_array, label)
    assert json.loads(body)["label"] == image
    assert _stats(label_server)["completed"] == 1  # the SEG in the PACS makes the image labelled

    wrong = np.ones((10, 10), np.uint8)
    status, _, body = _save_label(label_server, image, wrong)
    assert status == 422, body[:500]
    assert "does not fit" in json.loads(body)["detail"]
    status, _, body = _save_label(label_server, "1.2.3.4.5", label)
    assert status == 404, body[:500]
    assert len(_segs(orthanc, image)) == 1


def test_training_data_takes_the_labels_from_the_pacs(label_server, orthanc, dicom_dir, tmp_path):
    """A label SEG put in the PACS by someone else is downloaded as the image's label for training."""
    from segdino_monai.apps.monailabel.label_seg import write_label_seg

    source = pydicom.dcmread(dicom_dir / PALETTE)
    label = np.zeros((source.Rows, source.Columns), np.uint8)
    label[100:300, 200:600] = 1
    Image.fromarray(label).save(tmp_path / "label.png")
    orthanc.upload(write_label_seg(dicom_dir / PALETTE, tmp_path / "label.png", tmp_path / "seg.dcm"))
    time.sleep(1.5)  # the series lists are kept for MONAI_LABEL_DICOMWEB_CACHE_EXPIRY (1 s here)
    status, _, body = label_server.request("GET", "/datastore/?output=train")
    assert status == 200, body[:500]
    found = {Path(item["image"]).name: item["label"] for item in json.loads(body)}
    assert f"{source.SeriesInstanceUID}.dcm" in found, found
    with Image.open(found[f"{source.SeriesInstanceUID}.dcm"]) as picture:
        np.testing.assert_array_equal(np.asarray(picture), label)
    assert _stats(label_server)["completed"] == 2


def test_an_annotators_seg_from_ohif_is_the_final_label_and_retrains(
    label_server, orthanc, results, dicom_dir, tmp_path
):
    """OHIF's Brush SEG (LABELMAP, RLE, MANUAL, "Unspecified", PixelSpacing "0.5") of an unlabelled image is taken
    as its final label at the next listing, pixel for pixel, and retrains; the model's AUTOMATIC SEG never labels."""
    from tests.apps.ohif_seg import ohif_seg

    label_server.wait_trainings(len(label_server.train_tasks()), timeout=300)  # the earlier labels' retrainings
    before = {task["id"] for task in label_server.train_tasks()}
    source = pydicom.dcmread(dicom_dir / ENDOSCOPY)
    image = _uid(source, "SeriesInstanceUID")
    rectangle = np.zeros((source.Rows, source.Columns), np.uint8)
    rectangle[20 : source.Rows // 2, 30 : source.Columns - 40] = 1
    seg = ohif_seg(dicom_dir / ENDOSCOPY, rectangle)
    seg.save_as(tmp_path / "ohif.dcm", enforce_file_format=True)
    orthanc.upload(tmp_path / "ohif.dcm")
    time.sleep(1.5)  # the series lists are kept for MONAI_LABEL_DICOMWEB_CACHE_EXPIRY (1 s here)
    assert _stats(label_server)["completed"] == 3  # the listing takes it
    status, _, body = label_server.request(
        "GET", f"/datastore/label?{urllib.parse.urlencode({'label': image, 'tag': 'final'})}"
    )
    assert status == 200, body[:500]
    np.testing.assert_array_equal(png(body), rectangle)
    new = [task for task in label_server.wait_trainings(len(before) + 1, timeout=300) if task["id"] not in before]
    assert [task["status"] for task in new] == ["DONE"], new
    time.sleep(1.5)
    assert _stats(label_server)["completed"] == 3  # taken once: listed again, no new label and no retraining
    assert len(label_server.train_tasks()) == len(before) + 1

    status, _, body = label_server.request("GET", "/datastore/?output=train")
    assert status == 200, body[:500]
    trained = {Path(item["image"]).name for item in json.loads(body)}
    assert f"{image}.dcm" in trained
    assert f"{results['US']}.dcm" not in trained  # only the model's AUTOMATIC SEG references it
