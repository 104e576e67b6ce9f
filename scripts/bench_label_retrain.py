"""Label saved to new model serving: retraining in the MONAI Label app with and without the feature cache.

For each number of labelled images (synthetic 256x256 PNGs: a bright ellipse on noise, its mask the label), a real
``segdino label-server`` (the MONAI Label environment, ``.venv-label`` or ``SEGDINO_LABEL_ENV``) serves the bundle
with ViT-S/16 at random weights (the cost of the real weights) and ``--set retrain_every=1``. With the cache, one
training first builds the cache of the labelled images (timed and reported apart: it happens once, as annotators
label). Then the clock runs from the upload of one more final label (``PUT /datastore/label``) until an inference
request on that image is answered by the retrained model: the automatic retraining (``retrain_epochs`` epochs,
20 % validation, from the served model) and the reload. Without the cache the same retraining runs the backbone on
every image, every epoch.

    python scripts/bench_label_retrain.py --sizes 20 100 500 --out runs/bench_label

Writes ``<out>/label_retrain.json`` and ``<out>/label_retrain.md`` (a table).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.apps.label_server import HOST, Server, free_port, label_env_path  # noqa: E402

logger = logging.getLogger("bench_label_retrain")
SIZE = 256


def synthetic(index: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (a bright ellipse on noise) and its 0/255 mask, seeded by ``index``."""
    rng = np.random.default_rng(index)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    cy, cx = rng.uniform(64, 192, 2)
    ry, rx = rng.uniform(20, 60, 2)
    mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    image = rng.normal(80, 25, (SIZE, SIZE, 3)) + mask[..., None] * rng.uniform(60, 120, 3)
    return np.clip(image, 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


def make_studies(folder: Path, count: int) -> Path:
    """``count`` labelled images and one unlabelled image, ``new``."""
    (folder / "labels" / "final").mkdir(parents=True)
    for index in range(count):
        image, mask = synthetic(index)
        Image.fromarray(image).save(folder / f"img{index:04d}.png")
        Image.fromarray(mask).save(folder / "labels" / "final" / f"img{index:04d}.png")
    Image.fromarray(synthetic(count)[0]).save(folder / "new.png")
    return folder


def trainings(app_dir: Path) -> list[dict]:
    path = app_dir / "trainings.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def measure(count: int, cache: bool, bundle: Path, work: Path, epochs: int, views: int) -> dict:
    """One server: (cache: build it with a first training), then label ``new`` and time until the new model serves."""
    folder = work / f"{'cache' if cache else 'nocache'}-{count}"
    studies = make_studies(folder / "studies", count)
    app_dir = folder / "app"
    args = [
        "--studies", str(studies), "--host", HOST, "--env", str(label_env_path()), "--app-dir", str(app_dir),
        "--bundle-root", str(bundle), "--backbone-weights", "random",
        "--set", f"feature_cache={str(cache).lower()}", "--set", f"feature_cache_views={views}",
        "--set", "retrain_every=1", "--set", f"retrain_epochs={epochs}",
    ]  # fmt: skip
    server = Server(args, folder / "server.log", free_port())
    result: dict = {"labelled": count, "feature_cache": cache, "epochs": epochs, "views": views}
    try:
        server.wait_ready(600)
        if cache:
            start = time.monotonic()
            body = json.dumps({"max_epochs": epochs, "val_split": 0.2}).encode()
            status, _, answer = server.request("POST", "/train/segdino", body, {"Content-Type": "application/json"})
            assert status == 200, answer[:500]
            tasks = server.wait_trainings(1, timeout=7200)
            assert tasks[-1]["status"] == "DONE", server.log_tail()
            result["cache_build_s"] = round(time.monotonic() - start, 2)
            result["cache_build_training"] = trainings(app_dir)[-1]
        status, _, answer = server.infer("new")  # the model is loaded before the clock starts
        assert status == 200, answer[:500]
        done = len(server.train_tasks())
        start = time.monotonic()
        saved = server.save_label("new", synthetic(count)[1])
        assert saved.get("retraining") == "queued", saved
        tasks = server.wait_trainings(done + 1, timeout=7200)
        assert tasks[-1]["status"] == "DONE", server.log_tail()
        status, _, answer = server.infer("new")
        assert status == 200, answer[:500]
        result["label_to_new_model_s"] = round(time.monotonic() - start, 2)
        result["retraining"] = trainings(app_dir)[-1]
    finally:
        server.stop()
    logger.info("%s", json.dumps(result))
    return result


def table(results: list[dict]) -> str:
    rows = [
        "| labelled images | feature cache | label saved to new model serving (s) | of which training (s) | "
        "backbone views computed | first cache build (s) |",
        "|---:|:---|---:|---:|---:|---:|",
    ]
    for r in results:
        training = r["retraining"]
        computed = training["views_computed"] if r["feature_cache"] else "all, every epoch"
        build = r.get("cache_build_s", "")
        rows.append(
            f"| {r['labelled']} | {'yes' if r['feature_cache'] else 'no'} | {r['label_to_new_model_s']:.1f} | "
            f"{training['seconds']:.1f} | {computed} | {build} |"
        )
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500], help="labelled images")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the retraining (retrain_epochs)")
    parser.add_argument("--views", type=int, default=1, help="cached views per image (feature_cache_views)")
    parser.add_argument("--modes", nargs="+", choices=["cache", "nocache"], default=["cache", "nocache"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_label"))
    parser.add_argument("--keep", action="store_true", help="keep the studies, app folders and server logs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from segdino_monai.networks import SegDINO

    work = Path(tempfile.mkdtemp(prefix="bench-label-"))
    bundle = work / "bundle"
    shutil.copytree(ROOT / "bundle", bundle, ignore=shutil.ignore_patterns("eval", "*.pt", "*.pth"))
    torch.manual_seed(0)
    SegDINO().save_decoder(bundle / "models" / "model.pt")  # ViT-S/16, random decoder
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for count in args.sizes:
        for mode in args.modes:
            results.append(measure(count, mode == "cache", bundle, work, args.epochs, args.views))
            (args.out / "label_retrain.json").write_text(json.dumps(results, indent=2))
            (args.out / "label_retrain.md").write_text(table(results))
    print(table(results))
    if args.keep:
        logger.info("kept %s", work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
