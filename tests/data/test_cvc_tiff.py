"""CVC-ClinicDB as it ships: ``Original/*.tif`` + ``Ground Truth/*.tif``, three samples per pixel tagged MINISBLACK.

Pillow cannot open these files; they go through ``segdino prepare-data`` and a one-epoch training here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segdino_monai.cli import main
from tests.conftest import TINY_VIT

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"


@pytest.fixture
def cvc_folder(fixtures_dir: Path, tmp_path: Path) -> Path:
    """Six 288x384 (rows x columns) pairs from real Kvasir-SEG frames, written the way CVC-ClinicDB stores them."""
    root = tmp_path / "CVC-ClinicDB"
    (root / "Original").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    images = sorted((fixtures_dir / "endoscopy" / "kvasir_seg_256" / "images").glob("*.jpg"))[:6]
    for index, path in enumerate(images, start=1):
        mask_path = fixtures_dir / "endoscopy" / "kvasir_seg_256" / "masks" / path.name
        rgb = np.asarray(Image.open(path).convert("RGB").resize((384, 288)))
        mask = np.asarray(Image.open(mask_path).convert("L").resize((384, 288), Image.Resampling.NEAREST)) > 127
        mask = np.dstack([mask.astype(np.uint8) * 255] * 3)
        for folder, values in (("Original", rgb), ("Ground Truth", mask)):
            tifffile.imwrite(root / folder / f"{index}.tif", values, photometric="minisblack", planarconfig="contig")
    with pytest.raises(OSError):
        Image.open(root / "Original" / "1.tif")  # what broke before: Pillow cannot identify these files
    return root


def test_cvc_tiffs_prepare_and_train(cvc_folder: Path, tmp_path: Path) -> None:
    datalist = tmp_path / "datalist.json"
    assert main(["prepare-data", "--layout", "cvc", str(cvc_folder), "-o", str(datalist)]) == 0
    entries = json.loads(datalist.read_text())
    names = sorted(Path(e["image"]).name for split in ("training", "validation", "test") for e in entries[split])
    assert names == [f"{i}.tif" for i in range(1, 7)]
    work = tmp_path / "run"
    status = main(
        [
            "train",
            "--bundle-root",
            str(BUNDLE),
            "--datalist",
            str(datalist),
            "--modality",
            "endoscopy",
            "--backbone-weights",
            "random",
            "--spatial-size",
            "64",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--output-dir",
            str(work / "eval"),
            "--ckpt-dir",
            str(work / "models"),
            "--set",
            f"network_def#backbone_kwargs={TINY_VIT!r}",
            "--set",
            "num_workers=0",
        ]
    )
    assert status == 0
    assert (work / "models" / "model.pt").is_file()
