"""MONAI Label's DICOMweb datastore made to serve 2D images (single-frame ultrasound, endoscopy, dermoscopy).

monailabel 0.8.5's ``DICOMWebDatastore`` (``monailabel/datastore/dicom.py``) was written for CT series. For a 2D
image it breaks in five places, which this subclass replaces:

- ``get_image_uri`` (dicom.py:88-91) converts the series to NIfTI with SimpleITK (``utils/convert.py:33-57``): an RGB
  ultrasound image becomes a ``(W, H, 1, 1, 3)`` vector volume, not the 2D picture the model was trained on. Here
  the image is the series' one DICOM file, which the bundle's reader reads as ``segdino dicom`` does (same pixels,
  same mask).
- ``save_label`` (dicom.py:192-196) writes the SEG with dcmqi's ``itkimage2segimage`` (``utils/convert.py:145-146``
  and ``173-190``), which the app downloads from GitHub at start (``interfaces/app.py:176``, ``556-575``);
  without it a final label is a ``FileNotFoundError`` (``utils/others/generic.py:78``), and an empty label gives
  no file and a ``FileNotFoundError`` (``convert.py:141-143``, then ``utils/dicom.py:115``). Here the SEG is
  written by ``segdino dicom``'s writer in the main environment (:mod:`segdino_monai.apps.monailabel.label_seg`)
  and stored by STOW-RS (MONAI Label's own ``dicom_web_upload_dcm``).
- Image ids are file names without ``file_ext`` (``LocalDatastore._to_id``, ``datastore/local.py:219-226``), which
  takes every trailing dot-separated part of up to 10 characters: ``<SeriesInstanceUID>.dcm`` would lose the UID's
  last components (``...185059.5457.dcm`` gives ``...185059``). Here ``.dcm`` is cut only.
- It retrieves series in the default transfer syntax (``utils/dicom.py:80``), which the server must transcode
  compressed images to: Orthanc cannot for JPEG 2000 (HTTP 500). Here series are retrieved as stored.
- Without the NIfTI conversion it never records the image (dicom.py:85-86), so a label cannot be saved
  (``ImageNotFoundException``, ``local.py:487-489``), and a SEG read back from the PACS stays a folder that
  training never sees (dicom.py:106-107). Here the image is recorded and a 2D SEG becomes a PNG label.

What stays as MONAI Label has it: one image is one series (``list_images``, dicom.py:129-133). A SEG in the PACS that
references a listed series is its final label only when a person made it (MONAI Label counts any, dicom.py:136-164,
the model's own included): a MANUAL or SEMIAUTOMATIC segment (OHIF's Brush, this app's final labels), or another
creator's SEG with no AUTOMATIC segment (:mod:`segdino_monai.apps.monailabel.person_seg`); the newest such SEG of an
image is converted to its PNG label, and one not taken before counts as a saved label for the app's retraining
(``taken-segs.json`` in the datastore folder keeps the taken SEGs).

The listing (``/datastore/``, the active-learning candidates) holds only series that can be labelled
as one 2D image (:func:`series_refusal`, decided from QIDO-RS attributes, no pixels retrieved): no SEG, SR or other
non-image series, none that segdino-monai wrote (its SEG, SC overlays and SR: Manufacturer ``segdino-monai`` or a
SeriesDescription starting "SegDINO"), no multi-frame image (a cine: MONAI Label 0.8.5 cannot choose a frame) and
no series of several instances. Such a series asked for by id gets HTTP 422 with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import pydicom
from cachetools import TTLCache, cached
from fastapi import HTTPException
from lib.configs import OVERRIDES_FILE
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.dicom import dicom_web_upload_dcm
from monailabel.interfaces.datastore import DefaultLabelTag
from PIL import Image
from pydicom.dataset import Dataset

from segdino_monai.apps.monailabel.person_seg import label_from_seg, made_by_person, newest_key, referenced_series
from segdino_monai.services.dicomweb import NON_IMAGE_MODALITIES, OWN_MANUFACTURER
from segdino_monai.utils.atomic import write_json

__all__ = [
    "SEG_PYTHON_VARIABLE",
    "SegDINODICOMwebDatastore",
    "dicomweb_datastore",
    "series_refusal",
    "served_modality",
]

logger = logging.getLogger(__name__)

#: The main environment's interpreter (with highdicom), set by ``segdino label-server``.
SEG_PYTHON_VARIABLE = "SEGDINO_LABEL_SEG_PYTHON"
_SEG_TIMEOUT_S = 300
_AS_STORED = (("application/dicom", "*"),)  # WADO-RS: any transfer syntax, no transcoding by the server
#: SOP classes that hold no image to label, by their UID roots: Segmentation (SEG, surface SEG, ...), Structured Report
_RESULT_CLASSES = {"1.2.840.10008.5.1.4.1.1.66": "segmentation", "1.2.840.10008.5.1.4.1.1.88": "structured report"}
#: Secondary Capture Image Storage and its multi-frame classes (.7.1 to .7.4); not VL (.77.*)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: how this package's series descriptions start (SEG "SegDINO segmentation", SC "SegDINO segmentation overlay", ...)
_OWN_DESCRIPTION = "SegDINO"
# QIDO-RS attributes (keywords): Orthanc's series answer lacks Manufacturer and SeriesDescription by default
_SERIES_FIELDS = ("Manufacturer", "SeriesDescription")
_INSTANCE_FIELDS = ("SeriesInstanceUID", "SOPClassUID", "NumberOfFrames")
#: the SEG instances already taken as final labels (SOPInstanceUIDs), in the datastore's folder
TAKEN_FILE = "taken-segs.json"
#: SEG series whose metadata is read, and SEGs taken as labels, per listing refresh (the rest at the next ones)
_NEW_SEGS_PER_REFRESH = 32
_TAG = {"SeriesInstanceUID": "0020000E", "StudyInstanceUID": "0020000D", "Modality": "00080060",
        "Manufacturer": "00080070", "SeriesDescription": "0008103E", "SOPClassUID": "00080016",
        "NumberOfFrames": "00280008"}  # fmt: skip


class SegDINODICOMwebDatastore(DICOMWebDatastore):
    """A DICOMweb datastore whose images are single-frame DICOM files and whose final labels go back as DICOM SEG.

    Args:
        client: the DICOMweb client of the PACS.
        search_filter: the QIDO-RS series filter of the served images (e.g. ``{"Modality": "US,ES,XC,OT"}``).
        seg_python: the main environment's interpreter, which writes the SEGs.
        modality: the served modality, naming the segmented structure in the SEG.
        cache_path: where series are downloaded (default MONAI Label's, ``~/.cache/monailabel/dicom``).
    """

    def __init__(
        self,
        client: Any,
        search_filter: dict[str, Any],
        seg_python: str,
        modality: str = "ultrasound",
        cache_path: str | None = None,
    ) -> None:
        super().__init__(client, search_filter, cache_path=cache_path, fetch_by_frame=False, convert_to_nifti=False)
        self._seg_python = seg_python
        self._modality = modality
        self._taken_file = os.path.join(self._datastore_path, TAKEN_FILE)
        self._segs: dict[str, list[dict[str, Any]]] = {}  # SEG series -> its instances' summaries (never change)
        self._sync_lock = threading.Lock()
        #: called with the image id when a person's SEG not taken before becomes its final label (the app retrains)
        self.on_new_label: Callable[[str], Any] | None = None
        self._refused: set[str] = set()  # SEG instances that cannot be a label of their image

    def _to_id(self, file: str) -> tuple[str, str]:
        if file.endswith(".dcm"):  # a UID is full of dots: only the extension goes
            return file[: -len(".dcm")], ".dcm"
        return super()._to_id(file)

    @cached(cache=TTLCache(maxsize=16, ttl=settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY))
    def list_images(self) -> list[str]:
        """The series of the search filter that can be labelled as one 2D image (see :func:`series_refusal`).

        Two QIDO-RS requests, whatever the number of series: the series (with Manufacturer and SeriesDescription) and
        their instances (SOP class and number of frames), both under the search filter.
        """
        series = self._client.search_for_series(
            search_filters=self._search_filter, fields=list(_SERIES_FIELDS), get_remaining=True
        )
        instances = self._client.search_for_instances(
            search_filters=self._search_filter, fields=list(_INSTANCE_FIELDS), get_remaining=True
        )
        listed = []
        for item in series:
            uid = _value(item, "SeriesInstanceUID")
            refusal = series_refusal(item, [i for i in instances if _value(i, "SeriesInstanceUID") == uid])
            if refusal:
                logger.debug("not listed: %s", refusal)
            elif uid:
                listed.append(str(uid))
        logger.info("%d of %d series listed (the others cannot be labelled as one 2D image)", len(listed), len(series))
        return listed

    def refusal(self, image_id: str) -> str | None:
        """Why the series ``image_id`` is not served (:func:`series_refusal`).

        ``None`` when it is not in the PACS, or could be served (not under the search filter, or not yet listed).
        """
        found = self._client.search_for_series(
            search_filters={"SeriesInstanceUID": image_id}, fields=list(_SERIES_FIELDS)
        )
        if not found:
            return None
        instances = self._client.search_for_instances(
            search_filters={"SeriesInstanceUID": image_id}, fields=list(_INSTANCE_FIELDS), get_remaining=True
        )
        return series_refusal(found[0], instances)

    def get_image_uri(self, image_id: str) -> str:
        """The series' DICOM file, downloaded once by WADO-RS; ``""`` for a series the search filter does not list.

        Raises:
            HTTPException: 422 for a series in the PACS that cannot be labelled as one 2D image (a cine, a series of
                several instances, a SEG, SR or other result), saying why.
        """
        cached = os.path.join(self._datastore.image_path(), f"{image_id}.dcm")
        if image_id in self._datastore.objects and os.path.isfile(cached):
            return cached
        if image_id not in self.list_images():
            refusal = self.refusal(image_id)
            if refusal:
                raise HTTPException(status_code=422, detail=refusal)
            return ""
        series_dir = self._download_series(image_id, os.path.join(self._datastore.image_path(), image_id))
        files = sorted(name for name in os.listdir(series_dir) if name.endswith(".dcm"))
        if len(files) != 1:
            raise HTTPException(
                status_code=422,
                detail=f"Series {image_id} holds {len(files)} instances: MONAI Label 0.8.5 serves one series as one "
                "image, and this app serves 2D images, so a series must hold one single-frame instance (segment the "
                "others with `segdino dicom <study URL>`)",
            )
        self.add_image(image_id, os.path.join(series_dir, files[0]), self._dicom_info(image_id))
        return cached

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The label picture of an image; a final label is a person's SEG in the PACS, kept as PNG.

        MONAI Label asks with the SEG's SeriesInstanceUID as ``label_id`` and the image as ``image_id``;
        otherwise ``label_id`` is the image id (the cached label).
        """
        if label_tag != DefaultLabelTag.FINAL or not image_id:
            return LocalDatastore.get_label_uri(self, label_id, label_tag)
        cached = LocalDatastore.get_label_uri(self, image_id, label_tag)
        if not (cached and os.path.isfile(cached)):
            self.sync_person_labels()
            cached = LocalDatastore.get_label_uri(self, image_id, label_tag)
        return cached if cached and os.path.isfile(cached) else ""

    @cached(cache=TTLCache(maxsize=16, ttl=settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY))
    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """The listed images whose final label is a person's SEG in the PACS (:func:`made_by_person`).

        MONAI Label's counts any SEG referencing the series, the model's own included (``dicom.py:136-164``).
        """
        return sorted(self.sync_person_labels())

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """The training pairs: the images with a person's SEG, its label taken from the newest such SEG."""
        self.sync_person_labels()
        return LocalDatastore.datalist(self, full_path)

    def start_taking(self, on_new_label: Callable[[str], Any]) -> None:
        """From now on, call ``on_new_label(image)`` for each person's SEG that becomes a final label.

        The SEGs already labelling images are recorded as taken first (the starting point, as the retraining
        counter's): only SEGs that come later are new. Called once, by the server process (not by the training
        subprocess, whose datastore only converts).
        """
        with self._sync_lock:
            labelled = self._sync()
            taken = self._read_taken() | set(labelled.values())
            write_json(sorted(taken), self._taken_file)
            self.on_new_label = on_new_label

    def sync_person_labels(self) -> dict[str, str]:
        """Take the newest person's SEG of each listed image as its final label; ``{image: SEG SOPInstanceUID}``.

        A SEG is downloaded and converted once (its SOPInstanceUID is kept with the label); a SEG not taken before
        (``taken-segs.json`` in the datastore folder) is reported to :attr:`on_new_label`, once. At most
        ``_NEW_SEGS_PER_REFRESH`` SEG series are looked at and as many SEGs converted per call.
        """
        with self._sync_lock:
            labelled = self._sync()
            new = []
            if self.on_new_label is not None:
                taken = self._read_taken()
                new = sorted(image for image, sop in labelled.items() if sop not in taken)
                if new:
                    write_json(sorted(taken | {labelled[image] for image in new}), self._taken_file)
        for image in new:
            logger.info("a person's SEG %s is the new final label of %s", labelled[image], image)
            try:
                self.on_new_label(image)  # type: ignore[misc]
            except Exception:  # the listing answers whatever the retraining does
                logger.exception("after the new final label of %s", image)
        return labelled

    def _read_taken(self) -> set[str]:
        try:
            with open(self._taken_file, encoding="utf-8") as f:
                return {str(uid) for uid in json.load(f)}
        except (OSError, ValueError):
            return set()

    def _sync(self) -> dict[str, str]:
        found = self._client.search_for_series(search_filters={"Modality": "SEG"}, get_remaining=True)
        listed = set(self.list_images())
        newest: dict[str, dict[str, Any]] = {}
        budget = _NEW_SEGS_PER_REFRESH
        for item in found:
            series, study = _value(item, "SeriesInstanceUID"), _value(item, "StudyInstanceUID")
            if not (series and study):
                continue
            if series not in self._segs:
                if budget <= 0:
                    continue
                budget -= 1
                try:
                    metadata = self._client.retrieve_series_metadata(str(study), str(series))
                except Exception as err:  # requests' errors: looked at again at the next refresh
                    logger.warning("SEG series %s: no metadata (%s)", series, err)
                    continue
                self._segs[series] = [_seg_summary(Dataset.from_json(m), str(study), str(series)) for m in metadata]
            for seg in self._segs[series]:
                for image in seg["images"] & listed if seg["person"] else ():
                    if image not in newest or seg["key"] > newest[image]["key"]:
                        newest[image] = seg
        labelled: dict[str, str] = {}
        budget = _NEW_SEGS_PER_REFRESH
        for image, seg in sorted(newest.items()):
            label = LocalDatastore.get_label_uri(self, image, DefaultLabelTag.FINAL)
            info = LocalDatastore.get_label_info(self, image, DefaultLabelTag.FINAL) if label else {}
            if label and os.path.isfile(label) and (info or {}).get("SOPInstanceUID") == seg["sop"]:
                labelled[image] = seg["sop"]
            elif seg["sop"] not in self._refused and budget > 0:
                budget -= 1
                try:
                    self._take(image, seg)
                except (HTTPException, ValueError, OSError) as err:
                    self._refused.add(seg["sop"])
                    logger.warning("SEG %s of %s left out: %s", seg["sop"], image, getattr(err, "detail", err))
                    continue
                labelled[image] = seg["sop"]
        return labelled

    def _take(self, image_id: str, seg: dict[str, Any]) -> None:
        """Convert the SEG instance to the image's final label (PNG of class indices) in the local datastore."""
        source = self.get_image_uri(image_id)
        if not source:
            raise ValueError(f"image {image_id} is not listed")
        image = pydicom.dcmread(source, stop_before_pixels=True)
        instance = self._client.retrieve_instance(seg["study"], seg["series"], seg["sop"], media_types=_AS_STORED)
        mask = label_from_seg(instance, str(image.SOPInstanceUID), (int(image.Rows), int(image.Columns)))
        with tempfile.TemporaryDirectory() as folder:
            png = os.path.join(folder, "label.png")
            Image.fromarray(mask).save(png)
            info = {"SeriesInstanceUID": seg["series"], "SOPInstanceUID": seg["sop"], "source": "person's SEG"}
            LocalDatastore.save_label(self, image_id, png, DefaultLabelTag.FINAL, info)
        logger.info("SEG %s (series %s) is the final label of %s", seg["sop"], seg["series"], image_id)

    def _download_series(self, series_id: str, folder: str) -> str:
        """Retrieve a series by WADO-RS into ``folder`` (once), as stored.

        MONAI Label's download (``utils/dicom.py:80``) asks for the default transfer syntax, Explicit VR Little
        Endian, which the server must transcode compressed images to: Orthanc cannot for JPEG 2000 (HTTP 500, "Cannot
        transcode image"). Here any transfer syntax is accepted, and the bundle's reader decodes it.
        """
        if os.path.isdir(folder) and os.listdir(folder):
            return folder
        found = self._client.search_for_series(search_filters={"SeriesInstanceUID": series_id})
        studies = [str(Dataset.from_json(item)["StudyInstanceUID"].value) for item in found]
        if not studies:
            raise HTTPException(status_code=404, detail=f"Series {series_id} is not on {self._client.base_url}")
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        partial = tempfile.mkdtemp(prefix=".download-", dir=os.path.dirname(folder))
        for instance in self._client.retrieve_series(studies[0], series_id, media_types=_AS_STORED):
            instance.save_as(os.path.join(partial, f"{instance.SOPInstanceUID}.dcm"))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)  # a download cut short leaves no series folder that looks complete
        return folder

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        """Keep the label in the cache; a final label also goes to the PACS as a DICOM SEG (STOW-RS).

        Raises:
            HTTPException: 404 for an image not listed; 422 when the label does not fit the image; 502 when the PACS
                refuses the SEG.
        """
        source = self.get_image_uri(image_id)
        if not source:
            raise HTTPException(status_code=404, detail=f"Image {image_id!r} is not in the datastore")
        label_info = dict(label_info or {})
        if label_tag == DefaultLabelTag.FINAL:
            with tempfile.TemporaryDirectory() as folder:
                seg = self._write_seg(source, label_filename, os.path.join(folder, "seg.dcm"), label_info)
                sop = str(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID)
                try:
                    series = dicom_web_upload_dcm(seg, self._client)
                except Exception as err:  # requests' HTTP errors and anything else of the STOW-RS request
                    raise HTTPException(
                        status_code=502, detail=f"The PACS {self._client.base_url} refused the SEG: {err}"
                    ) from err
            image = self.get_image_info(image_id)
            label_info.update(
                {key: image.get(key) for key in ("Modality", "PatientID", "StudyInstanceUID")}
                | {"SeriesInstanceUID": series, "SOPInstanceUID": sop}
            )
            with self._sync_lock:  # this label is counted by the app's on_save_label, never again as a new SEG
                write_json(sorted(self._read_taken() | {sop}), self._taken_file)
            logger.info("final label of %s stored in the PACS as SEG series %s", image_id, series)
        return LocalDatastore.save_label(self, image_id, label_filename, label_tag, label_info)

    def _write_seg(self, source: str, label: str, out: str, label_info: dict[str, Any]) -> str:
        command = [
            self._seg_python, "-m", "segdino_monai.apps.monailabel.label_seg", source, label, out,
            "--modality", self._modality, "--annotator", str(label_info.get("user") or ""),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=_SEG_TIMEOUT_S, check=False)
        if result.returncode == 2:
            raise HTTPException(status_code=422, detail=result.stderr.strip().splitlines()[-1])
        if result.returncode != 0:
            raise RuntimeError(f"writing the SEG failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return out


def _seg_summary(meta: Dataset, study: str, series: str) -> dict[str, Any]:
    """What the listing needs of a SEG instance, from its WADO-RS metadata (no pixels)."""
    return {
        "study": study,
        "series": series,
        "sop": str(meta.get("SOPInstanceUID", "")),
        "person": made_by_person(meta),
        "images": referenced_series(meta),
        "key": newest_key(meta),
    }


def _value(item: dict[str, Any], keyword: str) -> Any:
    """The first value of a DICOM JSON attribute (PS3.18 F.2), or ``None``."""
    values = item.get(_TAG[keyword], {}).get("Value") or [None]
    return values[0]


def _class_root(sop_class: str, root: str) -> bool:
    return sop_class == root or sop_class.startswith(root + ".")


def series_refusal(series: dict[str, Any], instances: list[dict[str, Any]]) -> str | None:
    """Why a series cannot be labelled as one 2D image, from its QIDO-RS answers (DICOM JSON); ``None`` when it can.

    Refused: a series of no image (modality SEG, SR, KO, PR, ... or a Segmentation or Structured Report SOP class), a
    series segdino-monai wrote (Manufacturer ``segdino-monai``, or a SeriesDescription starting "SegDINO" on a
    Secondary Capture: the SC overlays of ``segdino dicom --also-sc``), a multi-frame image (a cine: MONAI Label 0.8.5
    serves one series as one image and cannot choose a frame) and a series of other than one instance.

    Args:
        series: the series' QIDO-RS answer (SeriesInstanceUID, Modality, Manufacturer, SeriesDescription).
        instances: its instances' answers (SOPClassUID, NumberOfFrames).
    """
    uid, modality = _value(series, "SeriesInstanceUID"), str(_value(series, "Modality") or "")
    manufacturer = str(_value(series, "Manufacturer") or "")
    description = str(_value(series, "SeriesDescription") or "")
    classes = {str(_value(item, "SOPClassUID") or "") for item in instances}
    results = {name for sop in classes for root, name in _RESULT_CLASSES.items() if _class_root(sop, root)}
    secondary_capture = any(_class_root(sop, _SECONDARY_CAPTURE) for sop in classes)
    if modality in NON_IMAGE_MODALITIES or results:
        kind = " and ".join(sorted(results)) or f"modality {modality}"
        return f"Series {uid} holds no image to label ({kind})"
    if manufacturer == OWN_MANUFACTURER or (secondary_capture and description.startswith(_OWN_DESCRIPTION)):
        return f"Series {uid} ({description or modality}) was written by segdino-monai: a result, not an image to label"
    if len(instances) != 1:
        return (
            f"Series {uid} holds {len(instances)} instances: MONAI Label 0.8.5 serves one series as one image, and "
            "this app serves 2D images, so a series must hold one single-frame instance (segment the others with "
            "`segdino dicom <study URL>`)"
        )
    frames = int(_value(instances[0], "NumberOfFrames") or 1)
    if frames > 1:
        return (
            f"Series {uid} is a multi-frame image ({frames} frames, a cine): MONAI Label 0.8.5 serves one series as "
            "one 2D image and cannot choose a frame (segment it with `segdino dicom <study URL>`)"
        )
    return None


def served_modality(bundle: str) -> str:
    """The modality the served bundle copy runs: its overrides' ``modality``, else ``inference.json``'s."""
    for name in (OVERRIDES_FILE, "inference.json"):
        path = os.path.join(bundle, "configs", name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                modality = json.load(f).get("modality")
            if modality:
                return str(modality)
    return "ultrasound"


def dicomweb_datastore(studies: str, bundle: str) -> SegDINODICOMwebDatastore:
    """The datastore of ``--studies http(s)://.../dicom-web``, configured as MONAI Label configures its own.

    The ``MONAI_LABEL_*`` settings apply (search filter, QIDO/WADO/STOW prefixes, user and password, cache folder);
    dcmqi is not downloaded.

    Raises:
        RuntimeError: when the main environment's interpreter is not known (start with ``segdino label-server``).
    """
    seg_python = os.environ.get(SEG_PYTHON_VARIABLE, "")
    if not (seg_python and os.path.isfile(seg_python)):
        raise RuntimeError(
            f"{SEG_PYTHON_VARIABLE}={seg_python!r} is not an interpreter: start the server with `segdino label-server "
            "--studies <dicom-web URL>`, which names the main environment's Python (it writes the DICOM SEGs)."
        )
    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        from dicomweb_client.session_utils import create_session_from_user_pass

        session = create_session_from_user_pass(
            settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
        )
    client = DICOMwebClientX(
        url=studies,
        session=session,
        qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
        wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
        stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
    )
    cache_path = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
    logger.info("DICOMweb %s, series filter %s", studies, settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER)
    return SegDINODICOMwebDatastore(
        client,
        settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
        seg_python,
        modality=served_modality(bundle),
        cache_path=cache_path,
    )
