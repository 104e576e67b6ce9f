"""``segdino label-server`` in a subprocess on a loopback port, with small HTTP helpers (tests and scripts).

The MONAI Label environment (monailabel 0.8.5, monai 1.5.2, numpy<2, pydicom<3) is built once into ``.venv-label``
in the repository root (``SEGDINO_LABEL_ENV`` names another) and reused.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """The server exited or did not get ready; the message holds the end of its log."""


def label_env_path() -> Path:
    """Where the MONAI Label environment is (``SEGDINO_LABEL_ENV`` or ``<repo>/.venv-label``)."""
    return Path(os.environ.get("SEGDINO_LABEL_ENV", REPO / ".venv-label"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def multipart(
    fields: dict[str, str], upload: tuple[str, bytes] | None, name: str = "file"
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body: the fields, and ``upload`` (file name, bytes) as the form field ``name``."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in
             fields.items()]  # fmt: skip
    if upload:
        filename, data = upload
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(body: bytes) -> np.ndarray:
    with Image.open(BytesIO(body)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def label_env() -> Path:
    """The MONAI Label environment, built once; fails under SEGDINO_REQUIRE_FIXTURES=1 when it cannot be, else skips."""
    from segdino_monai.apps.monailabel.environment import ensure_label_env

    path = label_env_path()
    try:
        return ensure_label_env(path)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"the MONAI Label environment could not be built at {path}: {err}")
        pytest.skip(f"the MONAI Label environment could not be built at {path} (no package registry?): {err}")


class Server:
    """``segdino label-server`` in its own process group, with small HTTP helpers."""

    def __init__(self, args: list[str], log: Path, port: int) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log = log
        command = [sys.executable, "-m", "segdino_monai.cli", "label-server", "--port", str(port), *args]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=120):
        """Returns (status, content type, body) for any status."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, response.headers.get("content-type", ""), response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("content-type", ""), err.read()

    def info(self) -> dict:
        status, _, body = self.request("GET", "/info/")
        assert status == 200, body
        return json.loads(body)

    def infer(self, image: str = "", model: str = "segdino", upload: tuple[str, bytes] | None = None):
        query = urllib.parse.urlencode({"image": image, "output": "image"} if image else {"output": "image"})
        body, headers = multipart({"params": json.dumps({})}, upload)
        return self.request("POST", f"/infer/{model}?{query}", body, headers)

    def save_label(self, image: str, mask: np.ndarray, tag: str = "final") -> dict:
        """Upload ``mask`` (2D uint8) as the ``tag`` label of ``image`` (PUT /datastore/label); the answer."""
        data = BytesIO()
        Image.fromarray(mask).save(data, format="PNG")
        body, headers = multipart({"params": "{}"}, (f"{image}.png", data.getvalue()), name="label")
        query = urllib.parse.urlencode({"image": image, "tag": tag})
        status, _, answer = self.request("PUT", f"/datastore/label?{query}", body, headers)
        assert status == 200, answer[:500]
        return json.loads(answer)

    def train_tasks(self) -> list[dict]:
        status, _, body = self.request("GET", "/train/?all=true")
        if status == 404:  # no training yet
            return []
        assert status == 200, body[:500]
        answer = json.loads(body)
        return answer if isinstance(answer, list) else [answer]

    def wait_trainings(self, count: int, timeout: float = 600) -> list[dict]:
        """Wait until ``count`` trainings have finished (DONE or ERROR) and none runs or waits; returns them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.train_tasks()
            finished = [t for t in tasks if t.get("status") in ("DONE", "ERROR")]
            if len(finished) >= count and len(finished) == len(tasks):
                return tasks
            time.sleep(0.25)
        raise ServerError(f"{count} trainings did not finish within {timeout} s:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                info = self.info()
                if "segdino" in info.get("models", {}):
                    return info
            except (OSError, AssertionError):
                pass
            time.sleep(1)
        raise ServerError(f"the server did not list model segdino within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM to the server's process group, wait; returns the exit code (None if it had to be killed)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
                return None
        return self.process.returncode

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True
