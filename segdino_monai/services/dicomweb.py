"""DICOMweb for ``segdino dicom``: studies and series in by QIDO-RS/WADO-RS, results out by STOW-RS.

An input URL ``http(s)://HOST/.../dicom-web/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]`` is listed by
QIDO-RS and each of its instances retrieved by WADO-RS, as stored (any transfer syntax), into
``OUT/dicomweb/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``; those files then go through the same path
as local files (:func:`~segdino_monai.services.dicom_batch.run_dicom`), so a rerun finds its outputs done and a file
already retrieved is not fetched again. In a whole study, series that hold no images (SEG, SR, key objects, presentation
states: :data:`NON_IMAGE_MODALITIES`) and the series this package wrote (its Manufacturer) are passed over; a non-image
instance inside a series that is segmented is skipped and reported like a bad local file.

With ``--stow-url``, every DICOM file an instance's ``report.json`` lists in its ``outputs`` (``seg.dcm``, and any
other ``.dcm`` result) is stored by STOW-RS, one request per instance; a failure is reported per instance and the
local outputs are kept. The SEG's UIDs are derived from its source and model (see
:func:`~segdino_monai.dicom.seg.write_seg`), so storing again after a rerun replaces rather than duplicates.

The HTTP work is dicomweb-client's (QIDO/WADO/STOW requests, multipart encoding and decoding); an optional bearer
token (``--dicomweb-token`` or ``SEGDINO_DICOMWEB_TOKEN``) is sent with every request.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.errors import InputError

__all__ = [
    "NON_IMAGE_MODALITIES",
    "STAGING_FOLDER",
    "TOKEN_ENV",
    "DicomWebSource",
    "StowResult",
    "check_stow_url",
    "is_url",
    "record_in_summary",
    "retrieve",
    "store_results",
]

logger = logging.getLogger(__name__)

#: the folder under the output where retrieved instances are kept (they are the inputs of the run and of reruns).
STAGING_FOLDER = "dicomweb"
#: the environment variable read for a bearer token when ``--dicomweb-token`` is not given.
TOKEN_ENV = "SEGDINO_DICOMWEB_TOKEN"
#: series modalities that hold no images: passed over when a whole study is segmented.
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "KO", "PR", "DOC", "REG", "RTSTRUCT", "RWV", "PLAN"})
#: this package's Manufacturer in the objects it writes (SegOptions.manufacturer): such series are results.
OWN_MANUFACTURER = "segdino-monai"

_URL = re.compile(
    r"^(?P<root>https?://[^?#]+?)/studies/(?P<study>[0-9]+(?:\.[0-9]+)*)"
    r"(?:/series/(?P<series>[0-9]+(?:\.[0-9]+)*))?/?$",
    re.IGNORECASE,
)
_STUDY, _SERIES, _SOP, _MODALITY, _MANUFACTURER, _NUMBER = (
    "0020000D",
    "0020000E",
    "00080018",
    "00080060",
    "00080070",
    "00200013",
)
_ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)  # as stored: no transcoding by the server
_UID = re.compile(r"^[0-9]+(?:\.[0-9]+)*$")


def _listed_uid(value: Any, what: str, url: str) -> str:
    """A UID from the server's answer, checked: it becomes a folder or file name under the staging folder."""
    uid = str(value)
    if not _UID.fullmatch(uid) or len(uid) > 64:
        raise InputError(f"DICOMweb input {url}: the server listed {what} {uid!r}, which is not a DICOM UID")
    return uid


def is_url(text: str | Path) -> bool:
    """Whether an input is a DICOMweb URL (``http://`` or ``https://``) rather than a local path."""
    return str(text).lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class DicomWebSource:
    """A study or series on a DICOMweb server.

    Args:
        url: the URL as given.
        root: the server's DICOMweb root (``http://HOST:PORT/dicom-web``).
        study: the StudyInstanceUID.
        series: the SeriesInstanceUID, or ``None`` for the whole study.
    """

    url: str
    root: str
    study: str
    series: str | None = None

    @classmethod
    def parse(cls, url: str) -> DicomWebSource:
        """Split a study or series URL.

        Raises:
            InputError: the URL is not ``http(s)://HOST/.../studies/<UID>[/series/<UID>]``.
        """
        match = _URL.match(url.strip())
        if match is None:
            raise InputError(
                f"DICOMweb input {url}: expected http(s)://HOST/.../dicom-web/studies/<StudyInstanceUID>"
                "[/series/<SeriesInstanceUID>] (UIDs are digits and dots)"
            )
        return cls(url, match["root"], match["study"], match["series"])


def _client(root: str, token: str | None) -> Any:
    from dicomweb_client.api import DICOMwebClient

    headers = {"Authorization": f"Bearer {token}"} if token else None
    return DICOMwebClient(url=root, headers=headers, timeout=60)


def _network_error(what: str, root: str, err: Exception) -> InputError:
    """One clear line for a failed request: unreachable server, HTTP status (with what to do), or the error."""
    import requests

    response = getattr(err, "response", None)
    if isinstance(err, requests.HTTPError) and response is not None:
        status = response.status_code
        hint = {
            401: f"the server wants credentials: give --dicomweb-token or set {TOKEN_ENV}",
            403: "the server refused access: check the token and the server's permissions",
            404: "not found: check the DICOMweb root (often .../dicom-web) and the UIDs",
        }.get(status, "see the server's log")
        return InputError(f"{what}: HTTP {status} {response.reason or ''} from {root} ({hint})")
    if isinstance(err, requests.ConnectionError | requests.Timeout):
        return InputError(
            f"{what}: cannot reach the DICOMweb server {root} ({type(err).__name__}); check the URL, that the "
            "server runs and that this machine may connect to it"
        )
    return InputError(f"{what}: {type(err).__name__}: {err}")


def _value(item: Mapping[str, Any], tag: str) -> Any:
    """The first value of a DICOM JSON attribute (PS3.18 F.2), or ``None``."""
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def _request_errors() -> tuple[type[Exception], ...]:
    import requests

    return (requests.RequestException, ValueError)  # ValueError: a response dicomweb-client cannot decode


def _series_to_segment(client: Any, source: DicomWebSource) -> list[str]:
    """The SeriesInstanceUIDs to retrieve: the one asked for, or the study's image series (others passed over)."""
    if source.series is not None:
        return [source.series]
    found = client.search_for_series(source.study, fields=[_MANUFACTURER], get_remaining=True)
    chosen = []
    for item in found:
        uid, modality, maker = _value(item, _SERIES), _value(item, _MODALITY), _value(item, _MANUFACTURER)
        if modality in NON_IMAGE_MODALITIES or maker == OWN_MANUFACTURER:
            why = f"modality {modality}: no images" if modality in NON_IMAGE_MODALITIES else "results of segdino"
            logger.info("passed over series %s of study %s (%s)", uid, source.study, why)
        elif uid:
            chosen.append(_listed_uid(uid, "the series", source.url))
    if not found:
        raise InputError(f"DICOMweb input {source.url}: the server lists no such study; check the StudyInstanceUID")
    return chosen


def retrieve(url: str, staging: str | Path, token: str | None = None) -> list[Path]:
    """Retrieve the instances of a study or series URL into ``staging``; instances already there are not fetched.

    Args:
        url: ``http(s)://HOST/.../studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]``.
        staging: the folder to keep them in (``OUT/dicomweb``).
        token: a bearer token for the server, if it wants one.

    Returns:
        The files, series by series, each in instance-number order.

    Raises:
        InputError: a bad URL, an unreachable server, an HTTP error, a study or series with no instance, an
            instance the server lists but does not deliver.
    """
    source = DicomWebSource.parse(url)
    what = f"DICOMweb input {url}"
    _check_reachable(source.root, what, token)  # at once: dicomweb-client retries a refused connection for 30 s
    client = _client(source.root, token)
    try:
        series_uids = _series_to_segment(client, source)
        listed = []
        for series in series_uids:
            instances = client.search_for_instances(source.study, series, get_remaining=True)
            ordered = sorted(instances, key=lambda i: (_value(i, _NUMBER) or 0, str(_value(i, _SOP))))
            listed += [(series, _listed_uid(_value(i, _SOP), "the instance", url)) for i in ordered if _value(i, _SOP)]
    except InputError:
        raise
    except _request_errors() as err:
        raise _network_error(what, source.root, err) from err
    if not listed:
        where = "series" if source.series else "study (in its image series)"
        raise InputError(f"{what}: the server lists no instance in this {where}; check the UIDs")
    files = []
    fetched = 0
    for series, sop in listed:
        path = Path(staging) / source.study / series / f"{sop}.dcm"
        files.append(path)
        if path.is_file():  # written atomically: present means complete
            continue
        try:
            dataset = client.retrieve_instance(source.study, series, sop, media_types=_ANY_TRANSFER_SYNTAX)
        except _request_errors() as err:
            raise _network_error(f"{what}: instance {sop}", source.root, err) from err
        atomic_write(path, lambda tmp, ds=dataset: ds.save_as(tmp, enforce_file_format=True))
        fetched += 1
    logger.info(
        "%s: %d instance(s) in %d series (%d retrieved, %d already in %s)",
        url,
        len(files),
        len(series_uids),
        fetched,
        len(files) - fetched,
        staging,
    )
    return files


def check_stow_url(url: str, token: str | None = None) -> str:
    """The DICOMweb root of ``--stow-url``, once the server answers at all (any HTTP status: STOW may be all it does).

    A trailing ``/studies`` is removed (dicomweb-client adds it).

    Raises:
        InputError: not an http(s) URL, or the server cannot be reached.
    """
    if not is_url(url):
        raise InputError(f"--stow-url {url}: expected the server's DICOMweb root, http(s)://HOST[:PORT]/dicom-web")
    root = re.sub(r"/studies/?$", "", url.rstrip("/"))
    _check_reachable(root, f"--stow-url {url}", token)
    return root


def _check_reachable(root: str, what: str, token: str | None) -> None:
    """One request to ``root``: any HTTP answer will do; no answer at all is an :class:`InputError` naming ``what``."""
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        requests.get(root, headers=headers, timeout=20).close()
    except requests.RequestException as err:
        raise _network_error(what, root, err) from err


@dataclass
class StowResult:
    """What STOW-RS did, per instance: ``stored`` (the SOP Instance UIDs sent) and ``failed`` (with the reason)."""

    url: str
    stored: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every instance's results were stored."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """The outcome as recorded under ``stow`` in ``summary.json``."""
        counts = {"stored": len(self.stored), "failed": len(self.failed)}
        return {"url": self.url, "counts": counts, "stored": self.stored, "failed": self.failed}


class _NotStored(Exception):
    """An instance not stored for a reason of its own: the response lists it as failed, or the server is gone."""


def _dicom_outputs(folder: Path) -> list[Path]:
    """The DICOM files an instance's ``report.json`` lists in its ``outputs``, in order.

    That is ``seg.dcm``, then ``sc.dcm`` (a cine: a list of ``sc_NNNN.dcm``) and ``sr.dcm`` where written.
    """
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    names: list[str] = []
    for value in report.get("outputs", {}).values():
        names += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
    return [folder / name for name in names if name.lower().endswith(".dcm")]


def _failures(response: Any) -> list[str]:
    """The failed instances a STOW-RS response lists (Failed SOP Sequence, PS3.18 10.5.3)."""
    return [
        f"{item.get('ReferencedSOPInstanceUID', '?')} (failure reason {item.get('FailureReason', '?')})"
        for item in response.get("FailedSOPSequence", []) or []
    ]


def store_results(entries: Iterable[Mapping[str, Any]], root: str, token: str | None = None) -> StowResult:
    """Store the DICOM results of each instance by STOW-RS, one request per instance.

    Args:
        entries: summary entries of finished instances (``processed``, ``fallback`` and ``done``), with ``output``.
        root: the DICOMweb root (:func:`check_stow_url`).
        token: a bearer token, if the server wants one.

    Returns:
        Per instance, what was stored or why not; instances without a DICOM result are left out.
    """
    import pydicom
    import requests

    client = _client(root, token)
    result = StowResult(root)
    unreachable = None  # once the server is gone (after dicomweb-client's retries), the rest are not tried
    for entry in entries:
        folder = Path(entry["output"])
        record: dict[str, Any] = {"file": entry["file"], "output": str(folder)}
        try:
            files = _dicom_outputs(folder)
            if not files:
                continue
            if unreachable is not None:
                raise _NotStored(f"not sent: {unreachable}")
            datasets = [pydicom.dcmread(str(path)) for path in files]
            response = client.store_instances(datasets)
            failures = _failures(response)
            if failures:
                raise _NotStored(f"the server refused {', '.join(failures)}")
        except Exception as err:  # on purpose: one instance's failure is reported and the others are still sent
            reason = str(err if isinstance(err, _NotStored) else _network_error("STOW-RS", root, err))
            reason = reason.removeprefix("STOW-RS: ")
            if isinstance(err, requests.ConnectionError | requests.Timeout):
                unreachable = reason
            result.failed.append({**record, "reason": reason})
            logger.error("not stored: results of %s: %s", entry["file"], reason)
            continue
        record["SOPInstanceUIDs"] = [str(ds.SOPInstanceUID) for ds in datasets]
        result.stored.append(record)
        logger.info("stored %s by STOW-RS (%s)", ", ".join(p.name for p in files), folder.name)
    logger.info("STOW-RS to %s: %d instance(s) stored, %d failed", root, len(result.stored), len(result.failed))
    return result


def record_in_summary(output: str | Path, key: str, value: Mapping[str, Any] | Sequence[Any]) -> None:
    """Add ``key: value`` to ``OUT/summary.json`` (the DICOMweb inputs, the STOW-RS outcome)."""
    from segdino_monai.utils.atomic import write_json

    path = Path(output) / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary[key] = value
    write_json(summary, path)
