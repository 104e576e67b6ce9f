"""The README's uncertainty figure: a demo image, its TTA mask and its uncertainty map as a heat map over it.

Makes a synthetic demo dataset (``segdino make-demo-data``: no fixture or dataset image goes into the repository),
trains the decoder briefly (``segdino train``, feature cache on), segments a test image with
``segdino infer --set tta=true --set uncertainty=true`` and overlays the written ``<name>_uncertainty.png`` on the
image with matplotlib. Without ``--backbone-weights`` the backbone is a random DINOv3 ViT-S/16 (the figure then shows
the mechanics, not a good model).

Usage::

    python scripts/uncertainty_figure.py --out docs/images/uncertainty.png
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from segdino_monai.data.demo import make_demo_dataset

logger = logging.getLogger(__name__)


def _segdino(*args: str) -> None:
    command = [sys.executable, "-m", "segdino_monai.cli", *args]
    logger.info("running %s", " ".join(command))
    subprocess.run(command, check=True)


def make_figure(out: Path, work: Path, backbone_weights: str, epochs: int, modality: str) -> Path:
    """Train, infer with TTA and uncertainty, and save the three-panel figure to ``out``; returns ``out``."""
    datalist = make_demo_dataset(work / "demo", modality, num_images=24, seed=0)
    common = ["--backbone-weights", backbone_weights, "--modality", modality, "--ckpt-dir", str(work / "models")]
    _segdino(
        "train", "--dataset-dir", str(datalist.parent), *common, "--output-dir", str(work / "train"),
        "--epochs", str(epochs), "--set", "feature_cache=true",
    )  # fmt: skip
    test = json.loads(datalist.read_text())["test"][0]
    image_path = datalist.parent / test["image"]
    images = work / "infer_in"
    images.mkdir(parents=True, exist_ok=True)
    (images / image_path.name).write_bytes(image_path.read_bytes())
    _segdino(
        "infer", "--dataset-dir", str(images), *common, "--output-dir", str(work / "infer"),
        "--set", "tta=true", "--set", "uncertainty=true",
    )  # fmt: skip
    image = np.asarray(Image.open(image_path).convert("RGB"))
    mask = np.asarray(Image.open(work / "infer" / f"{image_path.stem}_mask.png")) > 0
    uncertainty = np.asarray(Image.open(work / "infer" / f"{image_path.stem}_uncertainty.png")).astype(float) / 255

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), dpi=90)
    axes[0].imshow(image)
    axes[0].set_title("demo image")
    axes[1].imshow(image)
    axes[1].contour(mask, levels=[0.5], colors="yellow", linewidths=1.2)
    axes[1].set_title("TTA mask (outline)")
    axes[2].imshow(image)
    heat = axes[2].imshow(uncertainty, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    axes[2].set_title("uncertainty (entropy)")
    fig.colorbar(heat, ax=axes[2], fraction=0.046, pad=0.04)
    for axis in axes:
        axis.set_axis_off()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    logger.info("wrote %s (%d bytes)", out, out.stat().st_size)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/uncertainty.png"), help="the figure (PNG)")
    parser.add_argument("--work", type=Path, default=Path("runs/uncertainty-figure"), help="working folder")
    parser.add_argument("--backbone-weights", default="random", help="DINOv3 weights file (default: random)")
    parser.add_argument("--epochs", type=int, default=15, help="decoder training epochs")
    parser.add_argument("--modality", default="endoscopy", choices=["ultrasound", "endoscopy", "dermoscopy"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_figure(args.out, args.work, args.backbone_weights, args.epochs, args.modality)
    return 0


if __name__ == "__main__":
    sys.exit(main())
