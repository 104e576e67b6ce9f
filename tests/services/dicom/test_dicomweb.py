"""`segdino dicom` with DICOMweb: studies and series in from a real Orthanc (QIDO-RS/WADO-RS), SEGs back (STOW-RS).

Orthanc is Debian's server with its DICOMweb plugin (``orthanc-dicomweb``), started by :mod:`tests.orthanc` on
loopback ports; the command runs as the user runs it (``segdino dicom URL ... --stow-url ...``) with the tests'
tiny random model. The SEGs are read back from Orthanc by WADO-RS and compared with the local ``seg.dcm``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from segdino_monai.cli import main
from segdino_monai.utils.errors import InputError
from tests.conftest import BUNDLE, TINY_OVERRIDES
from tests.orthanc import DICOMWEB_PLUGIN, Orthanc, free_port

pytest.importorskip("dicomweb_client")

US = "us/pydicom__pydicom/examples_palette.dcm"
ENDOSCOPY = "vl/ivmartel__dwv/nema-vl2_j2kr.dcm"  # VL endoscopic content as secondary capture, JPEG 2000 lossless


@pytest.fixture
def orthanc(orthanc_binary, tmp_path):
    if not DICOMWEB_PLUGIN.is_file():
        if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
            pytest.fail(
                f"SEGDINO_REQUIRE_FIXTURES=1 but {DICOMWEB_PLUGIN} (Debian package orthanc-dicomweb) is missing"
            )
        pytest.skip(f"{DICOMWEB_PLUGIN} missing (apt-get install orthanc-dicomweb): DICOMweb not tested")
    folder = tmp_path / "orthanc"
    folder.mkdir()
    server = Orthanc(orthanc_binary, folder, {}, dicomweb=True)
    server.start()
    yield server
    server.stop()


def _command(out: Path, checkpoint: Path, modality: str, *extra: str) -> list[str]:
    sets = [f"{k}={json.dumps(v)}" for k, v in TINY_OVERRIDES.items()]
    return ["dicom", *extra, "-o", str(out), "--bundle-root", str(BUNDLE), "--backbone-weights", "random",
            "--checkpoint", str(checkpoint), "--modality", modality, "--no-progress",
            *[a for s in sets for a in ("--set", s)]]  # fmt: skip


def _upload(orthanc: Orthanc, datasets: list[pydicom.Dataset], folder: Path) -> None:
    for k, ds in enumerate(datasets):
        path = folder / f"upload{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        orthanc.upload(path)


def _pacs_segs(orthanc: Orthanc, study: str) -> dict[str, list[pydicom.Dataset]]:
    """A study's SEGs in Orthanc, read by QIDO-RS and WADO-RS, by the SOP Instance UID of the image each references."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb_url)
    found: dict[str, list[pydicom.Dataset]] = {}
    for series in client.search_for_series(study, search_filters={"Modality": "SEG"}):
        series_uid = series["0020000E"]["Value"][0]
        for item in client.search_for_instances(study, series_uid):
            seg = client.retrieve_instance(study, series_uid, item["00080018"]["Value"][0])
            source = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
            found.setdefault(str(source), []).append(seg)
    return found


def _check_against_local(pacs: pydicom.Dataset, out: Path, source: pydicom.Dataset) -> None:
    """The SEG in the PACS is the local seg.dcm of the source: same UIDs, references and pixels."""
    local = pydicom.dcmread(out / source.SOPInstanceUID / "seg.dcm")
    assert pacs.SOPInstanceUID == local.SOPInstanceUID and pacs.SeriesInstanceUID == local.SeriesInstanceUID
    assert pacs.StudyInstanceUID == source.StudyInstanceUID  # in the source's study
    referenced = pacs.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert np.array_equal(pacs.pixel_array, local.pixel_array)
    assert 0 < int(local.pixel_array.sum()) < local.pixel_array.size  # a real mask: neither empty nor full


def test_study_url_stores_one_seg_per_instance(orthanc, dicom_dir, decoder_checkpoint, tmp_path):
    first = pydicom.dcmread(dicom_dir / US)
    second = pydicom.dcmread(dicom_dir / US)  # a second image instance in the same series
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    second.InstanceNumber = int(first.get("InstanceNumber", 1) or 1) + 1
    _upload(orthanc, [first, second], tmp_path)
    url = f"{orthanc.dicomweb_url}/studies/{first.StudyInstanceUID}"
    out = tmp_path / "out"
    command = _command(out, decoder_checkpoint, "ultrasound", url, "--stow-url", orthanc.dicomweb_url)

    assert main(command) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["processed"] == 2 and summary["stow"]["counts"] == {"stored": 2, "failed": 0}
    retrieved = sorted(p.name for p in (out / "dicomweb").rglob("*.dcm"))
    assert retrieved == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in (first, second))
    segs = _pacs_segs(orthanc, first.StudyInstanceUID)
    assert sorted(segs) == sorted([first.SOPInstanceUID, second.SOPInstanceUID])
    for source in (first, second):
        assert len(segs[source.SOPInstanceUID]) == 1
        _check_against_local(segs[source.SOPInstanceUID][0], out, source)
    uids = {sop: segs[sop][0].SOPInstanceUID for sop in segs}

    # a rerun (its SEG series now in the study are passed over), and one that segments again: still one SEG each
    for again, kind in ((command, "done"), ([*command, "--overwrite"], "processed")):
        assert main(again) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"][kind] == 2 and summary["counts"]["skipped"] == 0
        assert summary["stow"]["counts"] == {"stored": 2, "failed": 0}
        segs = _pacs_segs(orthanc, first.StudyInstanceUID)
        assert {sop: [seg.SOPInstanceUID for seg in found] for sop, found in segs.items()} == {
            sop: [uid] for sop, uid in uids.items()
        }
    assert len(orthanc.segs()) == 2  # nothing anywhere else in Orthanc either


def test_series_url_with_a_non_image_instance_and_a_failed_stow(orthanc, dicom_dir, decoder_checkpoint, tmp_path):
    image = pydicom.dcmread(dicom_dir / ENDOSCOPY)
    report = pydicom.Dataset()  # a Basic Text SR in the image's series: not an image
    report.file_meta = pydicom.dataset.FileMetaDataset()
    report.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.SOPInstanceUID = generate_uid()
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName"):
        setattr(report, keyword, image.get(keyword))
    report.Modality, report.InstanceNumber = "SR", 9
    _upload(orthanc, [image, report], tmp_path)
    url = f"{orthanc.dicomweb_url}/studies/{image.StudyInstanceUID}/series/{image.SeriesInstanceUID}"
    out = tmp_path / "out"

    # the server answers, but not to STOW-RS at this path: reported per instance, exit 1, local outputs kept
    wrong = f"{orthanc.url}/no-dicom-web"
    assert main(_command(out, decoder_checkpoint, "endoscopy", url, "--stow-url", wrong)) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["processed"] == 1
    [skipped] = summary["skipped"]
    assert Path(skipped["file"]).name == f"{report.SOPInstanceUID}.dcm" and skipped["reason"]
    [failed] = summary["stow"]["failed"]
    assert "HTTP 404" in failed["reason"] and Path(failed["output"]).name == image.SOPInstanceUID
    assert (out / image.SOPInstanceUID / "seg.dcm").is_file()
    assert _pacs_segs(orthanc, image.StudyInstanceUID) == {}

    # the rerun stores it; the SR is still reported as skipped
    assert main(_command(out, decoder_checkpoint, "endoscopy", url, "--stow-url", orthanc.dicomweb_url)) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["done"] == 1 and summary["counts"]["skipped"] == 1
    assert summary["stow"]["counts"] == {"stored": 1, "failed": 0}
    [seg] = _pacs_segs(orthanc, image.StudyInstanceUID)[image.SOPInstanceUID]
    _check_against_local(seg, out, image)


def test_bad_urls_are_clear_errors(orthanc, decoder_checkpoint, tmp_path, caplog, capsys):
    out = tmp_path / "out"
    nobody = f"http://127.0.0.1:{free_port()}/dicom-web"
    cases = [
        ([f"{orthanc.url}/dicom-web/series/1.2.3"], "expected http(s)://HOST/.../dicom-web/studies/<StudyInstanceUID>"),
        ([f"{nobody}/studies/1.2.3"], "cannot reach the DICOMweb server"),
        ([f"{orthanc.dicomweb_url}/studies/1.2.3"], "the server lists no such study"),
        ([f"{orthanc.dicomweb_url}/studies/1.2.3/series/4.5"], "lists no instance in this series"),
        ([f"{orthanc.url}/wrong-root/studies/1.2.3"], "HTTP 404"),
        ([f"{orthanc.dicomweb_url}/studies/1.2.3", "--stow-url", nobody], "--stow-url"),
    ]
    for extra, message in cases:
        caplog.clear()
        assert main(_command(out, decoder_checkpoint, "ultrasound", *extra)) == 2, extra
        captured = capsys.readouterr()  # the bundle's logging.conf, once loaded, sends log records to stdout
        text = caplog.text + captured.out + captured.err
        assert message in text and "Traceback" not in text and "InputError" not in text, (extra, text)
    assert not out.exists()  # nothing written, and the model never loaded


def test_seg_uids_follow_the_source_and_the_model(dicom_dir):
    """Same source and model: the same SEG UIDs (a PACS replaces its copy); another source, model or task: others."""
    from dataclasses import replace

    from segdino_monai.dicom.seg import SegOptions, seg_uids

    source = pydicom.dcmread(dicom_dir / US, stop_before_pixels=True)
    other = pydicom.Dataset()
    other.SOPInstanceUID = generate_uid()
    options = SegOptions(task="lesion", model_name="SegDINO vits16 (model.pt)", model_id="ab" * 32)
    uids = seg_uids(source, options)
    assert uids == seg_uids(source, replace(options)) and len(set(uids)) == 2
    assert all(pydicom.uid.UID(uid).is_valid for uid in uids)
    variants = [
        seg_uids(other, options),
        seg_uids(source, replace(options, model_id="cd" * 32)),  # retrained: same file name, other weights
        seg_uids(source, replace(options, task="thyroid-nodule")),
        seg_uids(source, replace(options, segmentation_type="LABELMAP")),
    ]
    assert len({uid for pair in [uids, *variants] for uid in pair}) == 10


def test_token_is_sent_and_a_refusal_says_what_to_do(decoder_checkpoint, tmp_path, monkeypatch, caplog, capsys):
    """A server that wants credentials: the bearer token (option or environment) goes with every request."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web/studies/1.2.3"
    try:
        assert (
            main(_command(tmp_path / "out", decoder_checkpoint, "ultrasound", url, "--dicomweb-token", "s3cret")) == 2
        )
        monkeypatch.setenv("SEGDINO_DICOMWEB_TOKEN", "from-env")
        assert main(_command(tmp_path / "out", decoder_checkpoint, "ultrasound", url)) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert set(seen[: len(seen) // 2]) == {"Bearer s3cret"} and set(seen[len(seen) // 2 :]) == {"Bearer from-env"}
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err
    assert "HTTP 401" in text and "--dicomweb-token or set SEGDINO_DICOMWEB_TOKEN" in text


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2.3/../4", "1.2.x", "1." + "2" * 70])
def test_a_uid_from_the_server_that_is_not_a_uid_is_refused_before_it_names_a_file(uid):
    """UIDs in the server's answers name the staging files: anything but digits and dots (64 at most) is refused."""
    from segdino_monai.services.dicomweb import _listed_uid

    assert _listed_uid("1.2.840.10008.5.1", "the instance", "http://h/dicom-web/studies/1.2") == "1.2.840.10008.5.1"
    with pytest.raises(InputError, match="which is not a DICOM UID"):
        _listed_uid(uid, "the instance", "http://h/dicom-web/studies/1.2")
