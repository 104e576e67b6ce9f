"""C-STORE SCU: send one DICOM file to a remote node (the PACS), telling a retryable failure from a final one."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from segdino_monai.utils.errors import InputError

__all__ = ["Destination", "SendError", "send_file"]

logger = logging.getLogger(__name__)

_AET = re.compile(r"[ -~]{1,16}")  # PS3.5: AE is up to 16 characters of the default repertoire, no backslash
#: C-STORE statuses that mean success: 0x0000 and the PS3.4 Annex B warnings (coercion, elements discarded, ...).
_SUCCESS = {0x0000, 0xB000, 0xB006, 0xB007}


@dataclass(frozen=True)
class Destination:
    """A remote DICOM node: its AE title, host and port (``AET@HOST:PORT``)."""

    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, option: str = "--forward") -> Destination:
        """Read ``AET@HOST:PORT``.

        Raises:
            InputError: naming ``option`` and the expected form.
        """
        aet, at, address = text.partition("@")
        host, colon, port = address.rpartition(":")
        if not at or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(f"{option} {text}: expected AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
        if not _AET.fullmatch(aet) or "\\" in aet or not aet.strip():
            raise InputError(f"{option} {text}: the AE title {aet!r} must be 1 to 16 printable characters")
        return cls(aet, host, int(port))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


class SendError(Exception):
    """A C-STORE that did not succeed; ``retryable`` when trying again later may work (no connection, busy)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def send_file(path: str | Path, destination: Destination, calling_aet: str, timeout: float = 30.0) -> int:
    """Send the DICOM file ``path`` to ``destination`` in one association; returns the success status.

    Raises:
        SendError: retryable when the association could not be made or broke off, or the peer is out of
            resources (0xA7xx); final for any other failure status (the peer refuses this object).
    """
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    dataset = pydicom.dcmread(path)
    syntax = dataset.file_meta.TransferSyntaxUID
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    syntaxes = list(dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    ae.add_requested_context(dataset.SOPClassUID, syntaxes)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.aet)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no connection"
        raise SendError(f"association with {destination} failed ({why})", retryable=True)
    try:
        status = assoc.send_c_store(dataset)
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:  # no response: the connection broke off or the peer timed out
        raise SendError(f"no C-STORE response from {destination} (connection lost or timed out)", retryable=True)
    code = int(status.Status)
    if code in _SUCCESS:
        return code
    comment = status.get("ErrorComment", "")
    message = f"{destination} answered C-STORE with status 0x{code:04X}{f' ({comment})' if comment else ''}"
    raise SendError(message, retryable=(code & 0xFF00) == 0xA700)
