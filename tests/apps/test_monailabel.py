"""The MONAI Label app end to end: the real server in its own environment, offline, on a loopback port.

The environment (monailabel 0.8.5, monai 1.5.2, numpy<2, pydicom<3) is built once into ``.venv-label`` in the
repository root (``SEGDINO_LABEL_ENV`` names another) and reused. The served bundle has a tiny random DINOv3 and a
random decoder; the bundle's own inference (main environment) is the reference for the served masks, and the
documented uncertainty score computed here with numpy (main environment) is the reference for the ``uncertainty``
strategy's scores and order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image
from scipy import ndimage

from segdino_monai.networks import SegDINO
from tests.apps.label_server import HOST, REPO, Server, ServerError, free_port, label_env, png
from tests.conftest import TINY_VIT

pytestmark = pytest.mark.slow

TINY = json.dumps(TINY_VIT)
NUM_IMAGES = 5  # labelled Kvasir images
# unlabelled: a non-square image, "wide", and two Kvasir images whose scores with the served random decoder are
# 1e-3 or more apart (they are close: its probabilities are all near 0.5), so that their order means something
UNLABELLED_KVASIR = (NUM_IMAGES + 3, NUM_IMAGES + 5)
VIEWS = 4  # the bundle's feature_cache_views


def _images(studies: Path) -> list[Path]:
    return sorted(p for p in studies.iterdir() if p.suffix in (".jpg", ".png"))


def _unlabelled(studies: Path) -> list[str]:
    return [p.stem for p in _images(studies) if not (studies / "labels" / "final" / p.name).exists()]


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.height, image.width


@pytest.fixture(scope="module")
def studies(fixtures_dir, tmp_path_factory) -> Path:
    """Kvasir images as .jpg with their masks in labels/final; unlabelled: a 256 x 200 (W x H) .png and two .jpg."""
    source = fixtures_dir / "endoscopy" / "kvasir_seg_256"
    folder = tmp_path_factory.mktemp("studies")
    (folder / "labels" / "final").mkdir(parents=True)
    images = sorted((source / "images").glob("*.jpg"))
    for image in images[:NUM_IMAGES]:
        shutil.copy(image, folder / image.name)
        shutil.copy(source / "masks" / image.name, folder / "labels" / "final" / image.name)
    with Image.open(images[NUM_IMAGES]) as image:
        image.convert("RGB").crop((0, 0, 256, 200)).save(folder / "wide.png")
    for index in UNLABELLED_KVASIR:
        shutil.copy(images[index], folder / images[index].name)
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
    env = label_env()
    work = tmp_path_factory.mktemp("label")
    args = [
        "--studies", str(studies), "--host", HOST, "--env", str(env), "--app-dir", str(work / "app"),
        "--bundle-root", str(bundle_copy), "--backbone-weights", "random",
        "--set", f"network_def#backbone_kwargs={TINY}",
        "--set", "retrain_every=1", "--set", "retrain_epochs=1",
    ]  # fmt: skip
    srv = Server(args, work / "server.log", free_port())
    srv.app_dir = work / "app"
    try:
        try:
            srv.wait_ready()
        except ServerError as err:
            pytest.fail(str(err))
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
        results[image] = png(body)
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
    assert {"random", "first", "diversity", "uncertainty"} <= set(info["strategies"])
    assert not {"sam_2d", "sam_3d"} & set(info["models"])
    assert info["datastore"]["total"] == NUM_IMAGES + 1 + len(UNLABELLED_KVASIR)
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
        np.testing.assert_array_equal(png(body), sequential[image])


def test_uploaded_image_gives_the_same_mask(server, studies, sequential):
    status, _, body = server.infer(upload=("wide.png", (studies / "wide.png").read_bytes()))
    assert status == 200, body[:500]
    np.testing.assert_array_equal(png(body), sequential["wide"])


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
    np.testing.assert_array_equal(png(body), sequential["wide"])


def _uncertainty(server) -> dict:
    body, headers = json.dumps({"wait": 240}).encode(), {"Content-Type": "application/json"}
    status, _, answer = server.request("POST", "/activelearning/uncertainty", body, headers, timeout=300)
    assert status == 200, answer[:1000]
    return json.loads(answer)


def _documented_scores(served: Path, images: list[Path]) -> dict[str, float]:
    """The documented default score (:mod:`segdino_monai.metrics.uncertainty`), computed independently with numpy.

    The served copy's network (its configs with the serving overrides: tiny random DINOv3, seeded; its ``model.pt``)
    on each image after the bundle's preprocessing; then the mean binary entropy in bits over the predicted object
    (foreground probability above the threshold) dilated by a 5-pixel band (chessboard: an 11 x 11 square), or over
    the whole image where nothing is predicted.
    """
    configs = served / "configs"
    overrides = json.loads((configs / "monailabel.json").read_text())
    modality = [configs / f"{overrides['modality']}.json"] if overrides.get("modality") else []
    parser = ConfigParser()
    parser.read_config([str(f) for f in [configs / "train.json", *modality, configs / "monailabel.json"]])
    parser.config.update({"bundle_root": str(served)})
    network = parser.get_parsed_content("network").eval()
    network.load_decoder(served / "models" / "model.pt")
    transform = parser.get_parsed_content("validate#preprocessing")
    threshold = float(parser.get_parsed_content("threshold"))
    scores = {}
    for path in images:
        with torch.no_grad():
            logits = network(torch.as_tensor(transform({"image": str(path)})["image"])[None])
        p = 1.0 / (1.0 + np.exp(-logits[0, 0].double().numpy()))
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.nan_to_num(p * np.log2(p)) - np.nan_to_num((1 - p) * np.log2(1 - p))
        found = p > threshold
        region = ndimage.binary_dilation(found, np.ones((11, 11), bool)) if found.any() else np.ones_like(found)
        scores[path.stem] = float(entropy[region].mean())
    return scores


UNCERTAINTY = {}  # the answer before training, for the test after it


def test_uncertainty_orders_the_unlabelled_images_by_the_documented_score(server, studies):
    answer = _uncertainty(server)
    unlabelled = _unlabelled(studies)
    assert len(unlabelled) == 3 and answer["pending"] == 0
    assert sorted(answer["ranking"]) == sorted(answer["scores"]) == unlabelled
    assert answer["id"] == answer["ranking"][0]
    served = server.app_dir / "model" / "segdino"
    assert answer["model_version"] == (served / "models" / "model.pt").stat().st_mtime_ns
    expected = _documented_scores(served, [p for p in _images(studies) if p.stem in unlabelled])
    order = sorted(expected, key=lambda image: -expected[image])
    # the order is meaningful: the scores are farther apart than the tolerance of the comparison
    assert all(expected[a] - expected[b] > 2e-4 for a, b in pairwise(order)), expected
    assert answer["ranking"] == order, (answer["scores"], expected)
    for image in unlabelled:
        assert 0 < answer["scores"][image] <= 1
        assert answer["scores"][image] == pytest.approx(expected[image], abs=5e-5), image
    assert _uncertainty(server)["scores"] == answer["scores"]  # cached: the same score again
    UNCERTAINTY.update(answer)


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
        # from the feature cache: the first training computes every view of the 5 images (training and validation),
        # the second computes none
        record = _trainings(server)[-1]
        assert (record["train_images"], record["validation_images"], record["feature_cache"]) == (4, 1, True)
        assert (record["views_computed"], record["views_reused"]) == ((VIEWS * NUM_IMAGES, 0), (0, VIEWS * NUM_IMAGES))[
            attempt
        ]
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
    np.testing.assert_array_equal(png(body).astype(np.int64) * 255, reference["wide"])


def test_uncertainty_is_scored_again_with_the_retrained_model(server):
    assert UNCERTAINTY, "needs test_uncertainty_orders_the_unlabelled_images_by_the_documented_score"
    answer = _uncertainty(server)
    model_file = server.app_dir / "model" / "segdino" / "models" / "model.pt"
    assert answer["model_version"] == model_file.stat().st_mtime_ns != UNCERTAINTY["model_version"]
    assert sorted(answer["scores"]) == sorted(UNCERTAINTY["scores"])
    assert all(answer["scores"][image] != UNCERTAINTY["scores"][image] for image in answer["scores"])


def _trainings(server) -> list[dict]:
    return [json.loads(line) for line in (server.app_dir / "trainings.jsonl").read_text().splitlines()]


def _next_image(server) -> tuple[int, dict]:
    body = json.dumps({"count": 5}).encode()
    status, _, answer = server.request("POST", "/activelearning/diversity", body, {"Content-Type": "application/json"})
    return status, json.loads(answer)


def test_diversity_suggests_an_unlabelled_image(server, studies):
    status, answer = _next_image(server)
    assert status == 200, answer
    assert sorted(answer["ranking"]) == _unlabelled(studies)
    assert answer["id"] == answer["ranking"][0]
    assert Path(answer["path"]).stem == answer["id"]


def test_a_new_final_label_retrains_from_the_cache_and_the_served_model_changes(server, studies, tmp_path):
    """The annotators' loop: label the suggested image; the server retrains (decoder only) and serves the new model."""
    model_file = server.app_dir / "model" / "segdino" / "models" / "model.pt"
    before = torch.load(model_file, map_location="cpu", weights_only=True)
    before = before.get("model", before)
    trainings = len(_trainings(server))
    mask = np.zeros(_image_size(studies / "wide.png"), np.uint8)
    mask[50:150, 60:200] = 255
    assert server.save_label("wide", mask, tag="original") == {"image": "wide", "label": "wide"}  # not final
    answer = server.save_label("wide", mask)
    assert answer["retraining"] == "queued", answer
    tasks = server.wait_trainings(trainings + 1, timeout=300)
    assert tasks[-1]["status"] == "DONE", server.log_tail()
    record = _trainings(server)[-1]
    assert record["max_epochs"] == 1  # retrain_epochs
    assert record["train_images"] + record["validation_images"] == NUM_IMAGES + 1
    # only the new image's views are computed: the backbone never runs for the images cached before
    assert (record["views_computed"], record["views_reused"]) == (VIEWS, VIEWS * NUM_IMAGES)
    after = torch.load(model_file, map_location="cpu", weights_only=True)
    after = after.get("model", after)
    assert any(not torch.equal(before[k], after[k]) for k in before), "the retraining left the decoder unchanged"
    status, _, body = server.infer("wide")
    assert status == 200, body[:500]
    reference = _bundle_inference([studies / "wide.png"], model_file.parent, tmp_path)
    np.testing.assert_array_equal(png(body).astype(np.int64) * 255, reference["wide"])
    # the labelled image is not suggested any more
    status, answer = _next_image(server)
    assert status == 200, answer
    assert sorted(answer["ranking"]) == [image for image in _unlabelled(studies) if image != "wide"]


def test_server_stops_cleanly(server):
    assert server.stop() is not None, f"the server ignored SIGTERM:\n{server.log_tail()}"
    deadline = time.monotonic() + 10
    while server.group_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server.group_alive(), "processes of the server are left over"
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/info/", timeout=5)
