"""A real Orthanc PACS for the tests: started on free loopback ports with its own storage, stopped after.

Debian's ``orthanc`` package (``Orthanc CONFIG.json``, no systemd). HTTP (REST API) and DICOM on 127.0.0.1 only
(``"RemoteAccessAllowed": false``); the node under test is registered in ``DicomModalities`` as ``segdino``. With
``dicomweb=True`` it loads the DICOMweb plugin (Debian's ``orthanc-dicomweb``), served under ``/dicom-web/``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

ORTHANC_AET = "ORTHANC"
#: the DICOMweb plugin of Debian's orthanc-dicomweb package
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """One Orthanc server; :meth:`start` and :meth:`stop` may be called again (same ports, same storage).

    Args:
        binary: the ``Orthanc`` executable.
        folder: its configuration, storage and log folder.
        modalities: ``{name: (AET, host, port)}`` it may send to.
        dicomweb: load the DICOMweb plugin (QIDO-RS, WADO-RS, STOW-RS under :attr:`dicomweb_url`).
    """

    def __init__(
        self, binary: str, folder: Path, modalities: dict[str, tuple[str, str, int]], dicomweb: bool = False
    ) -> None:
        self.binary, self.folder = binary, folder
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        config = {
            "Name": "segdino-test",
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AET,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomModalities": {name: list(value) for name, value in modalities.items()},
            "DicomAlwaysAllowStore": True,
            "DicomScuTimeout": 30,
            "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
        }
        if dicomweb:
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
            config["OverwriteInstances"] = True  # a SEG stored again (same SOP Instance UID) replaces the stored one
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 (the process writes it until stopped)
        self.process = subprocess.Popen([self.binary, str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.process.returncode}); see {self.folder / 'orthanc.log'}")
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def upload(self, path: Path) -> str:
        """Store a DICOM file by the REST API; returns its Orthanc instance id."""
        return self.request("POST", "/instances", path.read_bytes())["ID"]

    def send_to(self, modality: str, instance_ids: list[str]) -> Any:
        """Have Orthanc send instances to a registered modality by C-STORE (synchronous)."""
        return self.request("POST", f"/modalities/{modality}/store", json.dumps(instance_ids).encode())

    def file(self, instance_id: str) -> bytes:
        request = urllib.request.Request(f"{self.url}/instances/{instance_id}/file")
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def segs(self) -> list[Any]:
        """Every SEG instance Orthanc holds, as pydicom data sets."""
        return self.instances("SEG")

    def instances(self, modality: str) -> list[Any]:
        """Every instance of the series of ``modality`` (``SEG``, ``OT`` for Secondary Capture, ``SR``), as pydicom."""
        import io

        import pydicom

        found = self.request(
            "POST", "/tools/find", json.dumps({"Level": "Series", "Query": {"Modality": modality}}).encode()
        )
        datasets = []
        for series in found:
            for instance in self.get(f"/series/{series}/instances"):
                datasets.append(pydicom.dcmread(io.BytesIO(self.file(instance["ID"]))))
        return datasets
