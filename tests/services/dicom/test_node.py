"""`segdino dicom-node` against a real Orthanc PACS: images in by C-STORE, one SEG per image back, through faults.

The node runs as the user runs it (``python -m segdino_monai.cli dicom-node ...``, a subprocess) with the tests' tiny
random model; Orthanc is Debian's server started by :mod:`tests.orthanc`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import TINY_OVERRIDES
from tests.orthanc import ORTHANC_AET, Orthanc, free_port

pytest.importorskip("pynetdicom")

REPO = Path(__file__).resolve().parents[3]
NODE_AET = "SEGDINO"
SCU_AET = "LOADSCU"
US = "us/pydicom__pydicom-data/US1_UNCR.dcm"
US_RLE = "us/pydicom__pydicom-data/OBXXXX1A_rle.dcm"
US_SMALL = "us/pydicom__pydicom/examples_rgb_color.dcm"
US_CALIBRATED = "us/pydicom__pydicom/examples_palette.dcm"  # pixel size from its ultrasound region: an SR
ENDOSCOPY_J2K = "vl/ivmartel__dwv/nema-vl2_j2kr.dcm"  # secondary capture, JPEG 2000 lossless
PER_ASSOCIATION = 25  # the load test: 4 associations, 100 instances
SEG = "seg/ImagingDataCommons__highdicom/seg_image_cr_binary.dcm"


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def echo(port: int, aet: str = SCU_AET) -> bool:
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status) == 0


def send(port: int, items: list, aet: str = SCU_AET) -> list[int]:
    """C-STORE data sets (or files) to the node in one association; the status of each."""
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    for item in items:
        meta = item.file_meta if isinstance(item, pydicom.Dataset) else pydicom.dcmread(item).file_meta
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    assert assoc.is_established, f"association with the node on {port} failed"
    statuses = [int(assoc.send_c_store(item).Status) for item in items]
    assoc.release()
    return statuses


class Node:
    """``segdino dicom-node`` as a subprocess with the tiny test model."""

    def __init__(self, store: Path, forward_port: int, checkpoint: Path, *extra: str, port: int | None = None) -> None:
        self.store, self.port = store, port or free_port()
        self.log = store.parent / f"{store.name}-node.log"
        self.command = [sys.executable, "-m", "segdino_monai.cli", "dicom-node", "--aet", NODE_AET]
        self.command += ["--port", str(self.port), "--forward", f"{ORTHANC_AET}@127.0.0.1:{forward_port}"]
        self.command += ["--store-dir", str(store), "--backbone-weights", "random", "--checkpoint", str(checkpoint)]
        self.command += ["--modality", "ultrasound", "--max-backoff", "2", *extra]
        for key, value in TINY_OVERRIDES.items():
            self.command += ["--set", f"{key}={value!r}"]
        self.process: subprocess.Popen | None = None

    def start(self) -> Node:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: self.process.poll() is not None or echo(self.port, ORTHANC_AET), 90, "the node's C-ECHO")
        except AssertionError:
            self.kill()
            raise AssertionError(f"the node did not start:\n{self.log.read_text()[-3000:]}") from None
        assert self.process.poll() is None, f"the node exited:\n{self.log.read_text()[-3000:]}"
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def states(self) -> dict[str, str]:
        return {p.stem: json.loads(p.read_text())["state"] for p in (self.store / "journal").glob("*.json")}


def seg_sources(orthanc: Orthanc) -> dict[str, list]:
    """The SEGs in Orthanc by the SOP Instance UID of the image each references."""
    found: dict[str, list] = {}
    for seg in orthanc.segs():
        source = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        found.setdefault(str(source), []).append(seg)
    return found


def copies(path: Path, count: int) -> list[pydicom.Dataset]:
    """``count`` copies of a DICOM file, each a new instance of a new series."""
    datasets = []
    series = generate_uid()
    for _ in range(count):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series
        datasets.append(ds)
    return datasets


@pytest.fixture(scope="module")
def pacs(orthanc_binary, tmp_path_factory):
    """Orthanc, with the shared node of this module registered as modality ``segdino``."""
    node_port = free_port()
    orthanc = Orthanc(
        orthanc_binary, tmp_path_factory.mktemp("orthanc"), {"segdino": (NODE_AET, "127.0.0.1", node_port)}
    )
    orthanc.start()
    orthanc.node_port = node_port
    yield orthanc
    orthanc.stop()


@pytest.fixture(scope="module")
def node(pacs, decoder_checkpoint, tmp_path_factory):
    """One node forwarding to ``pacs``, accepting Orthanc and the tests' SCU only."""
    store = tmp_path_factory.mktemp("node") / "store"
    allowed = ("--allowed-aets", f"{ORTHANC_AET},{SCU_AET}")
    running = Node(store, pacs.dicom_port, decoder_checkpoint, *allowed, port=pacs.node_port).start()
    yield running
    assert running.terminate() == 0, running.log.read_text()[-3000:]
    assert "DICOM node stopped; 0 instance(s) left" in running.log.read_text()


def test_orthanc_sends_images_and_receives_one_seg_each(pacs, node, dicom_dir, segmenter_factory, tmp_path):
    from segdino_monai.services.dicom_batch import run_dicom

    files = [dicom_dir / name for name in (US, US_RLE, ENDOSCOPY_J2K)]
    ids = [pacs.upload(path) for path in files]
    answer = pacs.send_to("segdino", ids)
    assert answer["FailedInstancesCount"] == 0 and answer["InstancesCount"] == 3
    sources = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID): path for path in files}
    found = wait_for(lambda: (f := seg_sources(pacs)) and set(sources) <= set(f) and f, 90, "3 SEGs in Orthanc")
    local = run_dicom(list(files), tmp_path / "local", segmenter_factory("ultrasound"), progress=False)
    assert len(local.processed) == 3
    for uid, path in sources.items():
        assert len(found[uid]) == 1, f"{path.name}: {len(found[uid])} SEGs in Orthanc"
        seg = found[uid][0]
        source = pydicom.dcmread(path, stop_before_pixels=True)
        assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.SeriesInstanceUID != source.SeriesInstanceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        expected = pydicom.dcmread(tmp_path / "local" / uid / "seg.dcm")
        assert np.array_equal(seg.pixel_array, expected.pixel_array), path.name
    log = node.log.read_text()
    assert all(f"received {uid}" in log and f"of {uid} to {ORTHANC_AET}" in log for uid in sources)


def test_bad_input_is_refused_and_the_node_keeps_serving(pacs, node, dicom_dir):
    from pynetdicom import AE

    # a SEG is not an image to segment: SOP class not supported (the context is accepted, the object refused)
    assert send(node.port, [dicom_dir / SEG]) == [0x0122]
    # a data set whose pixel data was cut short in transit cannot be understood
    broken = copies(dicom_dir / US, 1)[0]
    broken.PixelData = broken.PixelData[:-1000]
    assert send(node.port, [broken]) == [0xC210]
    # one whose pixel data is missing does not match its (image) SOP class
    del broken.PixelData
    assert send(node.port, [broken]) == [0xA900]
    # an unknown calling AE title is rejected at association
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(broken.SOPClassUID, broken.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AET)
    assert assoc.is_rejected and not assoc.is_established
    # and a good image is still received and segmented
    (fresh,) = copies(dicom_dir / US_SMALL, 1)
    assert send(node.port, [fresh]) == [0x0000]
    wait_for(lambda: fresh.SOPInstanceUID in seg_sources(pacs), 60, "the good image's SEG")
    log = node.log.read_text()
    assert "is not an image we segment" in log and "damaged data set" in log and "rejected" in log
    refused = {str(pydicom.dcmread(dicom_dir / SEG, stop_before_pixels=True).SOPInstanceUID), broken.SOPInstanceUID}
    assert not refused & set(node.states())  # nothing refused was journaled


def test_four_concurrent_associations_lose_nothing(pacs, node, dicom_dir):
    """100 instances in all over 4 simultaneous associations: each stored, segmented and sent once."""
    batches = [copies(dicom_dir / US_SMALL, PER_ASSOCIATION) for _ in range(4)]
    statuses: list[list[int]] = [[] for _ in batches]

    def run(index: int) -> None:
        statuses[index] = send(node.port, batches[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [[0] * PER_ASSOCIATION] * 4
    uids = {str(ds.SOPInstanceUID) for batch in batches for ds in batch}
    found = wait_for(lambda: (f := seg_sources(pacs)) and uids <= set(f) and f, 600, "100 SEGs in Orthanc")
    assert all(len(found[uid]) == 1 for uid in uids)
    # the PACS has the SEG before the node journals the confirmed send: wait for the journal too
    wait_for(lambda: all(node.states().get(uid) == "sent" for uid in uids), 60, "all 100 journaled as sent")


def test_sigkill_while_queued_then_restart_delivers_exactly_one_seg_each(pacs, decoder_checkpoint, dicom_dir, tmp_path):
    node = Node(tmp_path / "store", pacs.dicom_port, decoder_checkpoint).start()
    images = copies(dicom_dir / US_SMALL, 6)
    assert send(node.port, images) == [0] * 6
    node.kill()
    states = node.states()
    assert len(states) == 6  # every acknowledged instance is journaled
    assert any(state != "sent" for state in states.values()), f"nothing was left queued: {states}"
    restarted = Node(tmp_path / "store", pacs.dicom_port, decoder_checkpoint).start()
    uids = {str(ds.SOPInstanceUID) for ds in images}
    found = wait_for(lambda: (f := seg_sources(pacs)) and uids <= set(f) and f, 90, "6 SEGs after the restart")
    assert all(len(found[uid]) == 1 for uid in uids), {uid: len(found[uid]) for uid in uids}
    wait_for(lambda: set(restarted.states().values()) == {"sent"}, 30, "every journal entry sent")
    # the same image sent again is acknowledged and not processed twice
    assert send(restarted.port, images[:1]) == [0]
    assert restarted.terminate() == 0
    assert len(seg_sources(pacs)[str(images[0].SOPInstanceUID)]) == 1
    assert "not processed twice" in restarted.log.read_text()


def test_sc_and_sr_too_exactly_once_each_through_a_sigkill(pacs, decoder_checkpoint, dicom_dir, tmp_path):
    """With --also-sc --also-sr the PACS gets one SEG, one SC and one SR per image; a SIGKILL between the sends of
    one image's objects loses none, and no object whose send was journaled as confirmed is sent again."""
    node = Node(tmp_path / "store", pacs.dicom_port, decoder_checkpoint, "--also-sc", "--also-sr").start()
    images = copies(dicom_dir / US_CALIBRATED, 3)
    assert send(node.port, images) == [0] * 3
    journal = tmp_path / "store" / "journal"

    def entries() -> list[dict]:
        return [json.loads(p.read_text()) for p in journal.glob("*.json")]

    wait_for(lambda: any(e.get("sent") for e in entries()), 90, "a first confirmed send")
    node.kill()
    confirmed = {uid for e in entries() for uid in e.get("sent", [])}
    planned = {o["uid"]: o["kind"] for e in entries() for o in e.get("objects", [])}
    assert any(e["state"] != "sent" for e in entries()), "nothing was left to send"
    before_restart = node.log.stat().st_size  # the two runs append to one log
    restarted = Node(tmp_path / "store", pacs.dicom_port, decoder_checkpoint, "--also-sc", "--also-sr").start()
    wait_for(lambda: {e["state"] for e in entries()} == {"sent"}, 120, "every image sent")
    assert restarted.terminate() == 0
    sources = {str(ds.SOPInstanceUID) for ds in images}
    segs = {uid: found for uid, found in seg_sources(pacs).items() if uid in sources}
    scs = [sc for sc in pacs.instances("OT") if sc.SourceImageSequence[0].ReferencedSOPInstanceUID in sources]
    srs = [sr for sr in pacs.instances("SR") if sr.StudyInstanceUID == images[0].StudyInstanceUID]
    assert sorted(len(found) for found in segs.values()) == [1, 1, 1] and len(segs) == 3
    assert sorted(sc.SourceImageSequence[0].ReferencedSOPInstanceUID for sc in scs) == sorted(sources)
    evidence = {
        sr.SOPInstanceUID: {
            item.ReferencedSOPInstanceUID
            for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for item in series.ReferencedSOPSequence
        }
        for sr in srs
    }
    assert len(srs) == 3  # one per image, each citing its image and the SEG in the PACS
    assert sorted(tuple(sorted(uids)) for uids in evidence.values()) == sorted(
        tuple(sorted({uid, str(found[0].SOPInstanceUID)})) for uid, found in segs.items()
    )
    # what was journaled before the kill reached the PACS under those UIDs; a confirmed object is not sent again (the
    # first run's log line may be missing: the kill can land between the journal's confirmation and that line)
    stored = {str(ds.SOPInstanceUID) for ds in [*scs, *srs, *(f[0] for f in segs.values())]}
    assert set(planned) <= stored
    log = restarted.log.read_bytes()[before_restart:].decode()
    assert confirmed and "sent " in log
    for uid in confirmed:
        assert f"sent {planned[uid].upper()} {uid} of" not in log, uid


def test_a_restart_sends_only_the_objects_not_yet_confirmed(pacs, dicom_dir, tmp_path):
    """A journal entry whose SEG send was confirmed (killed before its SC and SR went): the restarted node sends
    the SC and the SR, and not the SEG (the PACS never had it here, so a resend would show)."""
    from segdino_monai.dicom.sc import write_sc
    from segdino_monai.dicom.seg import SegOptions, write_seg
    from segdino_monai.dicom.source import prepare_seg_source
    from segdino_monai.dicom.sr import write_sr
    from segdino_monai.services.node import SEGMENTED, DicomNode, Journal
    from segdino_monai.services.sender import Destination

    (image,) = copies(dicom_dir / US_CALIBRATED, 1)
    uid = str(image.SOPInstanceUID)
    journal = Journal(tmp_path / "store")
    folder = journal.results / uid / uid
    folder.mkdir(parents=True)
    source, _ = prepare_seg_source(image)
    mask = np.zeros((image.Rows, image.Columns), np.uint8)
    mask[100:200, 300:500] = 1
    write_seg(source, mask, folder / "seg.dcm")
    seg_uid = str(pydicom.dcmread(folder / "seg.dcm").SOPInstanceUID)
    (sc,) = write_sc(source, [(None, np.zeros((*mask.shape, 3), np.uint8), mask)], folder, seg_uid)
    write_sr(source, folder / "seg.dcm", [(None, mask)], (0.26, 0.26), folder / "sr.dcm", SegOptions())
    objects = [
        {
            "kind": kind,
            "file": str((folder / name).relative_to(journal.root)),
            "uid": str(pydicom.dcmread(folder / name).SOPInstanceUID),
        }
        for kind, name in (("seg", "seg.dcm"), ("sc", sc), ("sr", "sr.dcm"))
    ]
    journal.update(uid, state=SEGMENTED, seg=objects[0]["file"], seg_uid=seg_uid, objects=objects, sent=[seg_uid])
    node = DicomNode(None, journal.root, Destination(ORTHANC_AET, "127.0.0.1", pacs.dicom_port), port=free_port(),
                     seg_options=SegOptions())  # fmt: skip
    node.start()
    try:
        wait_for(lambda: journal.read(uid)["state"] == "sent", 30, "the SC and SR sent")
    finally:
        node.stop()
    assert journal.read(uid)["sent"] == [o["uid"] for o in objects]
    assert uid not in seg_sources(pacs)  # the confirmed SEG was not sent again
    stored = {str(ds.SOPInstanceUID) for ds in [*pacs.instances("OT"), *pacs.instances("SR")]}
    assert {objects[1]["uid"], objects[2]["uid"]} <= stored


def test_destination_down_then_back_gets_every_seg(orthanc_binary, decoder_checkpoint, dicom_dir, tmp_path):
    """Sends are retried while the PACS is down; a node stopped meanwhile resends the same SEGs (same UIDs) later."""
    (tmp_path / "pacs").mkdir()
    later = Orthanc(orthanc_binary, tmp_path / "pacs", {})
    node = Node(tmp_path / "store", later.dicom_port, decoder_checkpoint).start()
    restarted = None
    try:
        images = copies(dicom_dir / US_SMALL, 3)
        assert send(node.port, images) == [0] * 3
        wait_for(lambda: set(node.states().values()) == {"segmented"}, 60, "3 SEGs waiting for the stopped PACS")
        wait_for(lambda: "retrying in" in node.log.read_text(), 30, "a failed send to the stopped PACS")
        assert node.terminate() == 0  # SIGTERM during the back-off: a clean stop, the SEGs stay journaled
        assert "DICOM node stopped; 3 instance(s) left for the next start" in node.log.read_text()
        journal = tmp_path / "store" / "journal"
        seg_uids = {json.loads(p.read_text())["seg_uid"] for p in journal.glob("*.json")}
        restarted = Node(tmp_path / "store", later.dicom_port, decoder_checkpoint).start()
        time.sleep(1.0)
        assert set(restarted.states().values()) == {"segmented"}  # still down: retried, not lost
        later.start()
        uids = {str(ds.SOPInstanceUID) for ds in images}
        found = wait_for(lambda: (f := seg_sources(later)) and uids <= set(f) and f, 60, "3 SEGs once it is back")
        assert all(len(found[uid]) == 1 for uid in uids)
        assert {str(found[uid][0].SOPInstanceUID) for uid in uids} == seg_uids  # the SEGs made before the stop
        wait_for(lambda: set(restarted.states().values()) == {"sent"}, 30, "every journal entry sent")
        assert restarted.terminate() == 0
    finally:
        node.kill()
        if restarted is not None:
            restarted.kill()
        later.stop()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--forward", "ORTHANC@127.0.0.1"], "--forward ORTHANC@127.0.0.1: expected AET@HOST:PORT"),
        (["--forward", "A_TITLE_LONGER_THAN_16@h:104"], "must be 1 to 16 printable characters"),
        (["--forward", "PACS@h:104", "--task", "liver"], "--task liver: unknown task"),
    ],
)
def test_bad_options_stop_the_command_before_the_model_loads(options, message, caplog):
    from segdino_monai.cli import main

    assert main(["dicom-node", *options, "--bundle-root", "/nonexistent"]) == 2
    assert message in caplog.text
