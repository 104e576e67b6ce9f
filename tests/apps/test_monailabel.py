"""The MONAI Label app end to end: the real server in its own environment, offline, on a loopback port.

The environment (monailabel 0.8.5, monai 1.5.2, numpy<2, pydicom<3) is built once into ``.venv-label`` in the
repository root (``SEGDINO_LABEL_ENV`` names another) and reused. The served bundle has a tiny random DINOv3 and a
random decoder; the bundle's own inference (main environment) is the reference for the served masks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segdino_monai.networks import SegDINO
from tests.conftest import TINY_VIT

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
TINY = json.dumps(TINY_VIT)
NUM_IMAGES = 5  # labelled Kvasir images; plus one unlabelled non-square image, "wide"


def _label_env() -> Path:
    from segdino_monai.apps.monailabel.environment import ensure_label_env

    path = Path(os.environ.get("SEGDINO_LABEL_ENV", REPO / ".venv-label"))
    try:
        return ensure_label_env(path)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"the MONAI Label environment could not be built at {path}: {err}")
        pytest.skip(f"the MONAI Label environment could not be built at {path} (no package registry?): {err}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


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
        body, headers = _multipart({"params": json.dumps({})}, upload)
        return self.request("POST", f"/infer/{model}?{query}", body, headers)

    def wait_ready(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                info = self.info()
                if "segdino" in info.get("models", {}):
                    return info
            except (OSError, AssertionError):
                pass
            time.sleep(1)
        pytest.fail(f"the server did not list model segdino within {timeout} s:\n{self.log_tail()}")

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


def _multipart(fields: dict[str, str], upload: tuple[str, bytes] | None) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in
             fields.items()]  # fmt: skip
    if upload:
        name, data = upload
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _png(body: bytes) -> np.ndarray:
    with Image.open(BytesIO(body)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def _images(studies: Path) -> list[Path]:
    return sorted(p for p in studies.iterdir() if p.suffix in (".jpg", ".png"))


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.height, image.width


@pytest.fixture(scope="module")
def studies(fixtures_dir, tmp_path_factory) -> Path:
    """Kvasir images as .jpg with their masks in labels/final, and an unlabelled 256 x 200 (W x H) .png."""
    source = fixtures_dir / "endoscopy" / "kvasir_seg_256"
    folder = tmp_path_factory.mktemp("studies")
    (folder / "labels" / "final").mkdir(parents=True)
    images = sorted((source / "images").glob("*.jpg"))
    for image in images[:NUM_IMAGES]:
        shutil.copy(image, folder / image.name)
        shutil.copy(source / "masks" / image.name, folder / "labels" / "final" / image.name)
    with Image.open(images[NUM_IMAGES]) as image:
        image.convert("RGB").crop((0, 0, 256, 200)).save(folder / "wide.png")
    return folder


@pytest.fixture(scope="module")
def bundle_copy(tmp_path_factory) -> Path:
    """The repository's bundle with a random tiny-backbone decoder as models/model.pt."""
    folder = tmp_path_factory.mktemp("bundle") / "bundle"
    shutil.copytree(REPO / "bundle", folder, ignore=shutil.ignore_patterns("eval", "*.pt", "*.pth"))
    torch.manual_seed(0)
    SegDINO(backbone_kwargs=TINY_VIT).save_decoder(folder / "models" / "model.pt")
    return folder


@pytest.fixture(scope="module")
def server(studies, bundle_copy, tmp_path_factory):
    env = _label_env()
    work = tmp_path_factory.mktemp("label")
    args = [
        "--studies", str(studies), "--host", HOST, "--env", str(env), "--app-dir", str(work / "app"),
        "--bundle-root", str(bundle_copy), "--backbone-weights", "random",
        "--set", f"network_def#backbone_kwargs={TINY}",
    ]  # fmt: skip
    srv = Server(args, work / "server.log", _free_port())
    srv.app_dir = work / "app"
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def sequential(server, studies) -> dict[str, np.ndarray]:
    """Each image's mask from one request at a time."""
    results = {}
    for image in [p.stem for p in _images(studies)]:
        status, kind, body = server.infer(image)
        assert status == 200, body[:500]
        assert kind == "image/png"
        results[image] = _png(body)
    return results


def _bundle_inference(images: list[Path], ckpt_dir: Path, work: Path) -> dict[str, np.ndarray]:
    """The bundle's own inference (``python -m monai.bundle run inference``, main environment) on copies."""
    folder = work / "in"
    folder.mkdir(parents=True)
    for image in images:
        shutil.copy(image, folder / image.name)
    command = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", str(REPO / "bundle" / "configs" / "inference.json"),
        "--bundle_root", str(REPO / "bundle"),
        "--backbone_weights", "random", "--network_def#backbone_kwargs", TINY,
        "--dataset_dir", str(folder), "--ckpt_dir", str(ckpt_dir), "--output_dir", str(work / "out"),
        "--dataloader#num_workers", "0",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {image.stem: np.asarray(Image.open(work / "out" / f"{image.stem}_mask.png")) for image in images}


def test_info_lists_the_2d_model_and_its_trainer(server):
    info = server.info()
    model = info["models"]["segdino"]
    assert model["type"] == "segmentation"
    assert model["dimension"] == 2
    assert model["labels"] == {"foreground": 1}
    assert "segdino" in info["trainers"]
    assert not {"sam_2d", "sam_3d"} & set(info["models"])
    assert info["datastore"]["total"] == NUM_IMAGES + 1
    assert info["datastore"]["completed"] == NUM_IMAGES


def test_masks_have_the_original_size(sequential, studies):
    for path in _images(studies):
        mask = sequential[path.stem]
        assert mask.dtype == np.uint8
        assert mask.shape == _image_size(path), path.name
        assert set(np.unique(mask)) <= {0, 1}
    assert sequential["wide"].shape == (200, 256)


def test_served_masks_equal_the_bundle_inference(sequential, studies, bundle_copy, tmp_path):
    images = [studies / "wide.png", sorted(studies.glob("*.jpg"))[0]]
    reference = _bundle_inference(images, bundle_copy / "models", tmp_path)
    for image in images:
        # the bundle writes viewable 0/255 PNGs; the server returns class indices (0/1), the same pixels
        assert reference[image.stem].shape == sequential[image.stem].shape
        np.testing.assert_array_equal(sequential[image.stem].astype(np.int64) * 255, reference[image.stem])


def test_concurrent_requests_do_not_mix_results(server, sequential):
    ids = list(sequential)
    requests = [ids[i % len(ids)] for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(server.infer, requests))
    for image, (status, _, body) in zip(requests, answers, strict=True):
        assert status == 200, body[:500]
        np.testing.assert_array_equal(_png(body), sequential[image])


def test_uploaded_image_gives_the_same_mask(server, studies, sequential):
    status, _, body = server.infer(upload=("wide.png", (studies / "wide.png").read_bytes()))
    assert status == 200, body[:500]
    np.testing.assert_array_equal(_png(body), sequential["wide"])


@pytest.mark.parametrize(
    ("model", "image", "upload", "status", "message"),
    [
        ("segdino", "no_such_image", None, 404, "not in the datastore"),
        ("no_such_model", "wide", None, 404, "Unknown model"),
        ("segdino", "", ("broken.jpg", b"\xff\xd8\xff\xe0 not really a JPEG" * 10), 400, "Cannot read"),
    ],
    ids=["unknown-image", "unknown-model", "corrupt-upload"],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, sequential, model, image, upload, status, message):
    code, kind, body = server.infer(image, model=model, upload=upload)
    assert code == status, body[:500]
    assert "json" in kind
    assert message in json.loads(body)["detail"]
    code, _, body = server.infer("wide")
    assert code == 200
    np.testing.assert_array_equal(_png(body), sequential["wide"])


def _train_once(server, max_epochs: int) -> dict:
    body = json.dumps({"max_epochs": max_epochs, "val_split": 0.2}).encode()
    status, _, answer = server.request("POST", "/train/segdino", body, {"Content-Type": "application/json"})
    assert status == 200, answer[:500]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        task = json.loads(server.request("GET", "/train/")[2])
        if task.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(2)
    return task


def test_training_updates_the_served_model(server, studies, sequential, tmp_path):
    """Annotators retrain again and again: two trainings in a row, each updates model.pt and the served masks."""
    models = server.app_dir / "model" / "segdino" / "models"
    model_file = models / "model.pt"
    before = torch.load(model_file, map_location="cpu", weights_only=True)
    before = before.get("model", before)
    # a longer training, then a shorter one: the second used to end in FileNotFoundError (the pruning of the first
    # run's higher-epoch checkpoint deleted the second run's own file)
    for attempt, max_epochs in enumerate((3, 2)):
        task = _train_once(server, max_epochs)
        assert task.get("status") == "DONE", (attempt, json.dumps(task)[-3000:])
        after = torch.load(model_file, map_location="cpu", weights_only=True)
        after = after.get("model", after)
        assert after.keys() == before.keys()
        assert any(not torch.equal(before[k], after[k]) for k in before), (
            f"training {attempt} left the decoder unchanged"
        )
        assert [p.name for p in models.glob("last*.pt")] == [f"last_checkpoint_epoch={max_epochs}.pt"]
        before = after
    # inference reloads the new model.pt: the served mask is the bundle's inference with the trained weights
    status, _, body = server.infer("wide")
    assert status == 200, body[:500]
    reference = _bundle_inference([studies / "wide.png"], model_file.parent, tmp_path)
    np.testing.assert_array_equal(_png(body).astype(np.int64) * 255, reference["wide"])


def test_server_stops_cleanly(server):
    assert server.stop() is not None, f"the server ignored SIGTERM:\n{server.log_tail()}"
    deadline = time.monotonic() + 10
    while server.group_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server.group_alive(), "processes of the server are left over"
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/info/", timeout=5)
