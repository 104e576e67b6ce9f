"""A DICOM node (DIMSE): receive images by C-STORE, segment them in the background, forward the results by C-STORE.

The Storage SCP (pynetdicom) answers C-ECHO and C-STORE. A received image instance is written to
``STORE/incoming/<SOPInstanceUID>.dcm`` and synced to disk, and its journal entry ``STORE/journal/<UID>.json``
(state ``received``) too, before the success status goes back: once the sender has its success, the instance is
ours to finish. One worker thread segments the instances in arrival order with one :class:`BundlePredictor` (loaded
once) through :func:`~segdino_monai.services.dicom_batch.run_dicom`, the code path of ``segdino dicom``, into
``STORE/results/<UID>/`` (state ``segmented``, or ``no-seg`` when no SEG can be written for the source, with the
reason); another sends each SEG to the destination by C-STORE, then the Secondary Capture overlays and the SR
measurement report when ``seg_options`` asks for them (``also_sc``, ``also_sr``: every DICOM object the result's
``report.json`` lists in ``outputs``), retrying with exponential back-off while the destination cannot be reached
or is out of resources (state ``sent`` once all are; ``failed`` with the reason when the destination refuses an
object ``send_attempts`` times, or the instance cannot be segmented). Each confirmed object is journaled at once
(``sent``: their SOP Instance UIDs).

Restart: the journal tells what is left. A ``received`` instance is segmented (a SEG folder completed before a
SIGKILL is reused, not redone), a ``segmented`` one is sent: the same files, so the same SOP Instance UIDs, and a
PACS that already stored one keeps one copy. An object whose send was confirmed is never sent again, and an
instance received again (the same SOP Instance UID) is acknowledged and not processed twice. So every received
image instance ends with exactly one SEG (and one of each SC and SR asked for) at the destination.

Refused over the network: a calling AE title not in ``allowed_aets`` (association rejected); an object that is not
an image we segment (0x0122 "SOP class not supported", PS3.7 Annex C); a data set that does not match its SOP class
(no pixel data, UIDs that differ from the request: 0xA900, PS3.4 Annex B); one that cannot be decoded or whose
pixel data is shorter than its attributes say (0xC210, "cannot understand"); a disk write failure (0xA700, out of
resources).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segdino_monai.io.dicom_reader import DicomReadError, check_image_dataset, check_pixel_data_length
from segdino_monai.services.sender import Destination, SendError, send_file
from segdino_monai.utils.errors import InputError, input_error_message

__all__ = ["IMAGE_SOP_CLASSES", "DicomNode", "Journal", "serve"]

logger = logging.getLogger(__name__)

#: SOP classes the node accepts to segment: the single-frame and multi-frame photographic images `segdino dicom` reads.
IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",  # still sent by older scanners
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "VL Microscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.7": "Dermoscopic Photography Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}
#: transfer syntaxes accepted for them: uncompressed, deflated, and the compressed ones pydicom's plugins decode.
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
SUCCESS, NOT_SUPPORTED, DOES_NOT_MATCH, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0x0122, 0xA900, 0xA700, 0xC210
#: journal states; the last three are final.
RECEIVED, SEGMENTED, SENT, NO_SEG, FAILED = "received", "segmented", "sent", "no-seg", "failed"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def _durable_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably: temporary file, fsync, rename, fsync of the folder.

    Hand-written rather than :func:`~segdino_monai.utils.atomic.atomic_write`, which does not fsync: the node promises
    the sender that an acknowledged instance survives a crash or power cut.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class Journal:
    """The node's store folder: received instances, one JSON state file per instance, the results.

    Args:
        root: the store folder (created).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.states = self.root / "journal"
        self.results = self.root / "results"
        try:
            for folder in (self.incoming, self.states, self.results):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"--store-dir {self.root}: cannot create it ({err.strerror or err})") from err
        for leftover in [*self.incoming.glob(".*.tmp"), *self.states.glob(".*.tmp")]:
            leftover.unlink(missing_ok=True)  # half-written before a crash: never acknowledged
        self._lock = threading.Lock()

    def image(self, uid: str) -> Path:
        """The received file of instance ``uid``."""
        return self.incoming / f"{uid}.dcm"

    def read(self, uid: str) -> dict[str, Any] | None:
        """The journal entry of ``uid``, or None when it was never received."""
        try:
            return json.loads((self.states / f"{uid}.json").read_text())
        except FileNotFoundError:
            return None

    def update(self, uid: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the entry of ``uid`` and write it durably; returns the entry."""
        with self._lock:
            entry = {**(self.read(uid) or {"SOPInstanceUID": uid}), **fields}
            _durable_write(self.states / f"{uid}.json", json.dumps(entry, indent=1).encode())
        return entry

    def receive(self, uid: str, data: bytes, calling_aet: str) -> bool:
        """Store a received instance and journal it; False when it was received before (nothing written)."""
        with self._lock:
            if self.read(uid) is not None:
                return False
            _durable_write(self.image(uid), data)
            entry = {"SOPInstanceUID": uid, "state": RECEIVED, "calling_aet": calling_aet}
            _durable_write(self.states / f"{uid}.json", json.dumps(entry, indent=1).encode())
        return True

    def pending(self) -> list[dict[str, Any]]:
        """Entries not finished (``received`` or ``segmented``), oldest first.

        A received file without an entry (killed between the two writes, never acknowledged) is journaled as received.
        """
        for image in self.incoming.glob("*.dcm"):
            if self.read(image.stem) is None:
                self.update(image.stem, state=RECEIVED, calling_aet=None)
        entries = sorted(self.states.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        found = [json.loads(p.read_text()) for p in entries]
        return [e for e in found if e.get("state") in (RECEIVED, SEGMENTED)]


class DicomNode:
    """Storage SCP, segmentation worker and SEG sender over one :class:`Journal`.

    Args:
        segmenter: the model, loaded once (:class:`~segdino_monai.services.dicom_batch.BundlePredictor`).
        store_dir: the store folder (journal, received instances, results).
        forward: where SEGs go.
        aet: this node's AE title.
        host: the address to bind (127.0.0.1: this machine only).
        port: the port to listen on.
        allowed_aets: calling AE titles accepted (empty: any).
        seg_options: SEG descriptions (default: the modality's task).
        send_attempts: C-STORE refusals of one SEG by the destination before it is marked failed; an unreachable
            or busy destination is retried without limit.
        backoff: the first retry delay in seconds, doubled after each failure up to ``max_backoff``.
        max_backoff: the longest retry delay in seconds.
    """

    def __init__(
        self,
        segmenter: Any,
        store_dir: str | Path,
        forward: Destination,
        aet: str = "SEGDINO",
        host: str = "127.0.0.1",
        port: int = 11112,
        allowed_aets: Sequence[str] = (),
        seg_options: Any = None,
        send_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        from segdino_monai.dicom.seg import DEFAULT_TASK, SegOptions

        self.segmenter = segmenter
        self.journal = Journal(store_dir)
        self.forward = forward
        self.aet, self.host, self.port = aet, host, port
        self.allowed_aets = list(allowed_aets)
        self.seg_options = seg_options or SegOptions(task=DEFAULT_TASK.get(segmenter.modality, "lesion"))
        self.send_attempts, self.backoff, self.max_backoff = send_attempts, backoff, max_backoff
        self._to_segment: queue.Queue[str] = queue.Queue()
        self._to_send: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None

    def start(self) -> None:
        """Queue the journal's pending work, start the workers and the server (returns at once)."""
        from pynetdicom import AE, evt
        from pynetdicom.presentation import StoragePresentationContexts, VerificationPresentationContexts

        for entry in self.journal.pending():
            uid = entry["SOPInstanceUID"]
            (self._to_segment if entry["state"] == RECEIVED else self._to_send).put(uid)
            logger.info("resuming %s (%s)", uid, entry["state"])
        for name, loop in (("segment", self._segment_loop), ("send", self._send_loop)):
            thread = threading.Thread(target=loop, name=f"dicom-node-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        ae = AE(ae_title=self.aet)
        ae.maximum_associations = 16
        ae.require_calling_aet = self.allowed_aets
        for context in VerificationPresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        # every storage class is negotiated, so that a non-image object gets a DIMSE refusal naming the reason
        # rather than an unexplained presentation-context rejection
        for context in StoragePresentationContexts:
            if context.abstract_syntax not in IMAGE_SOP_CLASSES:
                ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES[:4])
        for uid, name in IMAGE_SOP_CLASSES.items():
            _register_storage_class(uid, name)
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo)]
        handlers += [(evt.EVT_REJECTED, self._on_rejected)]
        try:
            self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        except OSError as err:  # serve() stops the workers
            raise InputError(
                f"--host {self.host} --port {self.port}: cannot listen there ({err.strerror or err})"
            ) from err
        allowed = ", ".join(self.allowed_aets) if self.allowed_aets else "any"
        where = f"{self.host}:{self.port}"
        logger.info(
            "DICOM node %s listening on %s (calling AE titles: %s); SEGs go to %s; store %s",
            self.aet,
            where,
            allowed,
            self.forward,
            self.journal.root,
        )

    def stop(self) -> None:
        """Stop accepting, close the associations, let the workers finish their current item.

        What is left stays journaled for the next start.
        """
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()  # no new associations
            deadline = time.monotonic() + 5.0  # open ones may finish their C-STORE, then are aborted
            while server.active_associations and time.monotonic() < deadline:
                time.sleep(0.1)
            for assoc in server.active_associations:
                logger.warning("aborting the association with %s at shutdown", assoc.requestor.ae_title)
                assoc.abort()
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
        left = len(self.journal.pending())
        logger.info("DICOM node stopped; %d instance(s) left for the next start", left)

    # --- network events -------------------------------------------------------------------------------------------

    def _on_echo(self, event: Any) -> int:
        logger.info("C-ECHO from %s", event.assoc.requestor.ae_title)
        return SUCCESS

    def _on_rejected(self, event: Any) -> None:
        requestor = event.assoc.requestor
        logger.warning("association from %s (%s) rejected", requestor.ae_title, requestor.address)

    def _on_store(self, event: Any) -> int:
        """Check, store durably and journal one instance; the status tells the sender whether we have it."""
        calling = event.assoc.requestor.ae_title
        sop_class = str(event.request.AffectedSOPClassUID)
        request_uid = str(event.request.AffectedSOPInstanceUID)
        if sop_class not in IMAGE_SOP_CLASSES:
            logger.warning(
                "refused %s from %s: SOP class %s is not an image we segment", request_uid, calling, sop_class
            )
            return NOT_SUPPORTED
        try:
            dataset = event.dataset
            for _ in dataset.iterall():  # parse every element now: a damaged one fails here, not in the worker
                pass
        except Exception as err:  # on purpose: any decoding failure of the peer's bytes is its error, not ours
            logger.warning("refused %s from %s: the data set cannot be decoded (%s)", request_uid, calling, err)
            return CANNOT_UNDERSTAND
        problem = None
        if str(dataset.get("SOPClassUID", "")) != sop_class or str(dataset.get("SOPInstanceUID", "")) != request_uid:
            problem = "its SOP Class/Instance UIDs differ from the C-STORE request's"
        elif not _UID.fullmatch(request_uid) or len(request_uid) > 64:
            problem = f"SOP Instance UID {request_uid!r} is not a valid UID"
        else:
            try:
                check_image_dataset(dataset, f"C-STORE {request_uid}")
            except DicomReadError as err:
                problem = str(err)
        if problem is not None:
            logger.warning("refused %s from %s: %s", request_uid, calling, problem)
            return DOES_NOT_MATCH
        try:  # the reader's own check (pixel data as long as its attributes say), as `segdino dicom` reads it
            dataset.file_meta = event.file_meta
            check_pixel_data_length(dataset, f"C-STORE {request_uid}")
        except DicomReadError as err:
            logger.warning("refused %s from %s: damaged data set: %s", request_uid, calling, err)
            return CANNOT_UNDERSTAND
        try:
            new = self.journal.receive(request_uid, event.encoded_dataset(), calling)
        except OSError as err:
            logger.error("could not store %s from %s: %s", request_uid, calling, err)
            return OUT_OF_RESOURCES
        if new:
            logger.info("received %s (%s) from %s", request_uid, IMAGE_SOP_CLASSES[sop_class], calling)
            self._to_segment.put(request_uid)
        else:
            logger.info("received %s from %s again: already in the journal, not processed twice", request_uid, calling)
        return SUCCESS

    # --- workers --------------------------------------------------------------------------------------------------

    def _next(self, items: queue.Queue[str]) -> str | None:
        while not self._stop.is_set():
            try:
                return items.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def _segment_loop(self) -> None:
        while (uid := self._next(self._to_segment)) is not None:
            try:
                self._segment(uid)
            except Exception as err:  # on purpose: one instance's failure is journaled and the node goes on
                logger.exception("segmentation of %s failed", uid)
                self.journal.update(uid, state=FAILED, reason=f"{type(err).__name__}: {err}")

    def _segment(self, uid: str) -> None:
        """Segment one received instance with `segdino dicom`'s code path; queue its SEG for sending."""
        from segdino_monai.services.dicom_batch import run_dicom

        output = self.journal.results / uid
        try:
            summary = run_dicom(
                [self.journal.image(uid)], output, self.segmenter, seg_options=self.seg_options, progress=False
            )
        except InputError as err:
            self._fail(uid, input_error_message(err) or str(err))
            return
        if summary.processed or summary.done:
            folder = Path((summary.processed or summary.done)[0]["output"])
            seg = folder / "seg.dcm"
            if seg.is_file():
                objects = self._objects(folder)
                seg_uid = objects[0]["uid"]
                self.journal.update(
                    uid, state=SEGMENTED, seg=str(seg.relative_to(self.journal.root)), seg_uid=seg_uid, objects=objects
                )
                logger.info("segmented %s: %s", uid, ", ".join(f"{o['kind'].upper()} {o['uid']}" for o in objects))
                self._to_send.put(uid)
                return
        if summary.fallback:
            reason = summary.fallback[0].get("reason", "no SEG written")
            self.journal.update(uid, state=NO_SEG, reason=reason)
            logger.warning("segmented %s but no SEG can be written for it: %s (outputs in %s)", uid, reason, output)
            return
        items = summary.skipped + summary.failed
        self._fail(uid, items[0]["reason"] if items else "nothing was segmented")

    def _objects(self, folder: Path) -> list[dict[str, str]]:
        """The DICOM objects of a result folder to send, SEG first: ``{"kind", "file", "uid"}`` each.

        They are the ``.dcm`` files its ``report.json`` lists in ``outputs`` (``seg``, ``sc``, a list for a cine,
        ``sr``), in that order; ``file`` is relative to the store folder.
        """
        import pydicom

        outputs = json.loads((folder / "report.json").read_text())["outputs"]
        objects = []
        for kind in ("seg", "sc", "sr"):
            names = outputs.get(kind) or []
            for name in [names] if isinstance(names, str) else names:
                path = folder / name
                instance = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
                objects.append({"kind": kind, "file": str(path.relative_to(self.journal.root)), "uid": instance})
        return objects

    def _fail(self, uid: str, reason: str) -> None:
        self.journal.update(uid, state=FAILED, reason=reason)
        logger.error("failed %s: %s", uid, reason)

    def _send_loop(self) -> None:
        while (uid := self._next(self._to_send)) is not None:
            try:
                self._deliver(uid)
            except Exception as err:  # on purpose: a SEG that cannot be read is journaled and the node goes on
                logger.exception("sending the SEG of %s failed", uid)
                self.journal.update(uid, state=FAILED, reason=f"{type(err).__name__}: {err}")

    def _deliver(self, uid: str) -> None:
        """Send every DICOM object of ``uid`` not yet confirmed, SEG first; journal each confirmed send at once.

        The instance is ``sent`` when all are; an object the destination refuses ``send_attempts`` times makes it
        ``failed`` (what was confirmed before stays confirmed). A journal written by an earlier version, without
        ``objects``, sends its SEG.
        """
        entry = self.journal.read(uid) or {}
        objects = entry.get("objects") or [{"kind": "seg", "file": entry["seg"], "uid": entry["seg_uid"]}]
        sent = list(entry.get("sent", []))
        status = SUCCESS
        for item in objects:
            if item["uid"] in sent:  # confirmed before a restart: never sent twice
                continue
            result = self._send_object(uid, item, sent)
            if result is None:  # refused (journaled as failed) or the node stops (left for the next start)
                return
            status = result
        self.journal.update(uid, state=SENT, status=f"0x{status:04X}")

    def _send_object(self, uid: str, item: dict[str, str], sent: list[str]) -> int | None:
        """Send one object, retrying with back-off, and journal it in ``sent`` once confirmed.

        Returns:
            Its success status, or None when the destination refused it or the node stops.
        """
        path = self.journal.root / item["file"]
        kind = item["kind"].upper()
        delay, refusals, attempt = self.backoff, 0, 0
        while not self._stop.is_set():
            attempt += 1
            try:
                status = send_file(path, self.forward, self.aet)
            except SendError as err:
                refusals += 0 if err.retryable else 1
                if refusals >= self.send_attempts:
                    self._fail(uid, f"{kind} {item['uid']} refused {refusals} times: {err}")
                    return None
                logger.warning(
                    "sending %s of %s failed (attempt %d): %s; retrying in %.0f s", kind, uid, attempt, err, delay
                )
                self.journal.update(uid, send_attempts=attempt, last_error=str(err))
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            sent.append(item["uid"])
            self.journal.update(uid, sent=sent, send_attempts=attempt)
            logger.info("sent %s %s of %s to %s", kind, item["uid"], uid, self.forward)
            return status
        return None


def _register_storage_class(uid: str, name: str) -> None:
    """Make pynetdicom handle C-STORE of ``uid`` (it negotiates the retired US classes but has no service for them)."""
    from pynetdicom import sop_class
    from pynetdicom.service_class import StorageServiceClass

    if sop_class.uid_to_service_class(uid) is not StorageServiceClass:  # the retired US classes are not, in 3.0
        sop_class.register_uid(uid, re.sub(r"[^0-9A-Za-z]", "", name.title()), StorageServiceClass)


def serve(node: DicomNode) -> None:
    """Run ``node`` until SIGINT or SIGTERM, then stop it cleanly (current items finished, associations closed).

    Must run in the main thread (signal handlers).
    """
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        logger.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        node.start()
        while not stop.wait(0.5):  # a timeout keeps the main thread returning to Python, where handlers run
            pass
    finally:
        node.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
