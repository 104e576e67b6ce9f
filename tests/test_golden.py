"""Golden outputs: the fixture runs of every path give exactly the outputs recorded before the pipelines were
reshaped (issue 13): training (2 epochs, fixed seed), evaluation, inference (resize and sliding window, every
modality) and ``segdino dicom``.

Masks are recorded by shape, foreground count per class and the SHA-256 of their pixels; the per-image CSV by its
rows; DICOM SEG by the SHA-256 of its decoded segment pixels; the trained decoder by the SHA-256 of its tensors.
``SEGDINO_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` rewrites ``tests/golden/outputs.json``: only when a change
of output is intended, and the commit must say which outputs changed and why.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.bundle.conftest import CONFIGS, EVALUATE, INFERENCE, TRAIN, tiny_overrides, workflow

GOLDEN = Path(__file__).parent / "golden" / "outputs.json"
TRAIN_IMAGES, VAL_IMAGES, TEST_IMAGES = 5, 1, 2
INFERENCE_INPUTS = {
    "endoscopy": [("endoscopy/kvasir_seg_256", 8, 2), ("endoscopy/cvc_endoscene_512", 0, 1)],
    "ultrasound": [("ultrasound/busi_rgbmask", 0, 2), ("ultrasound/ddti", 0, 1)],
    "dermoscopy": [("dermoscopy/ham10000", 0, 1), ("dermoscopy/isic2017_val", 0, 1)],
}


def _digest(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    values, counts = np.unique(array, return_counts=True)
    return {
        "shape": list(array.shape),
        "counts": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True) if v != 0},
        "sha256": hashlib.sha256(array.astype(np.uint8).tobytes()).hexdigest(),
    }


def _masks(folder: Path) -> dict:
    """Every ``*_mask.png`` under ``folder`` (relative name: digest)."""
    found = sorted(p for p in folder.rglob("*.png") if p.name.endswith("mask.png"))
    return {str(p.relative_to(folder)): _digest(np.asarray(Image.open(p))) for p in found}


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return [dict(row) for row in csv.DictReader(f)]


def _images(fixtures: Path, folder: str, start: int, count: int) -> list[Path]:
    return sorted((fixtures / folder / "images").iterdir())[start : start + count]


def _pair(image: Path) -> dict:
    masks = {p.stem: p for p in (image.parent.parent / "masks").iterdir()}
    return {"image": str(image), "label": str(masks[image.stem])}


def _train_and_evaluate(fixtures: Path, work: Path) -> dict:
    images = _images(fixtures, "endoscopy/kvasir_seg_256", 0, TRAIN_IMAGES + VAL_IMAGES + TEST_IMAGES)
    pairs = [_pair(p) for p in images]
    datalist = work / "datalist.json"
    datalist.write_text(
        json.dumps(
            {
                "training": pairs[:TRAIN_IMAGES],
                "validation": pairs[TRAIN_IMAGES : TRAIN_IMAGES + VAL_IMAGES],
                "test": pairs[TRAIN_IMAGES + VAL_IMAGES :],
            }
        )
    )
    common = {"datalist": str(datalist), "batch_size": 2}
    flow = workflow(TRAIN, "train", **tiny_overrides(work, **common, **{"train#trainer#max_epochs": 2}))
    flow.run()
    flow.finalize()
    state = torch.load(work / "models" / "model.pt", weights_only=True)
    weights = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    flow = workflow(EVALUATE, "eval", **tiny_overrides(work, **common, save_predictions=True))
    flow.run()
    flow.finalize()
    rows = _csv_rows(work / "eval" / "metrics_per_image.csv")
    for row in rows:  # the path is where this checkout's fixtures are: keep the name
        row["filename"] = Path(row["filename"]).name
    masks = _masks(work / "eval" / "predictions")
    return {"decoder_sha256": weights, "evaluation_csv": rows, "evaluation_masks": masks}


def _random_decoder(work: Path) -> Path:
    """A seeded untrained decoder: its masks are far from empty or full, so any change of pixels shows."""
    from segdino_monai.networks import SegDINO
    from tests.conftest import TINY_VIT

    torch.manual_seed(0)
    folder = work / "random_decoder"
    folder.mkdir()
    return SegDINO(backbone_kwargs=TINY_VIT).save_decoder(folder / "model.pt")


def _infer(fixtures: Path, work: Path) -> dict:
    ckpt_dir = str(_random_decoder(work).parent)
    results = {}
    for modality, sources in INFERENCE_INPUTS.items():
        folder = work / f"images_{modality}"
        folder.mkdir()
        for source, start, count in sources:
            for image in _images(fixtures, source, start, count):
                (folder / f"{Path(source).name}_{image.name}").symlink_to(image)
        for mode in ("resize", "native"):
            out = work / f"infer_{modality}_{mode}"
            overrides = {
                "dataset_dir": str(folder),
                "inference_mode": mode,
                "output_dir": str(out),
                "ckpt_dir": ckpt_dir,
            }
            configs = [INFERENCE, str(CONFIGS / f"{modality}.json")]
            flow = workflow(configs, "infer", **tiny_overrides(work, **overrides))
            flow.run()
            flow.finalize()
            results[f"{modality}/{mode}"] = _masks(out)
    return results


def _dicom(fixtures: Path, work: Path) -> dict:
    import pydicom

    from segdino_monai.services.dicom_batch import DicomSegmenter, run_dicom
    from tests.dicom.conftest import TINY_OVERRIDES

    results = {}
    for modality, folder in (("ultrasound", "dicom/us"), ("endoscopy", "dicom/vl")):
        decoder = work / "random_decoder" / "model.pt"
        segmenter = DicomSegmenter(str(Path(TRAIN).parents[1]), "random", decoder, modality, overrides=TINY_OVERRIDES)
        out = work / f"dicom_{modality}"
        run_dicom([fixtures / folder], out, segmenter, progress=False)
        results[f"{modality}/masks"] = _masks(out)
        segs = {}
        for seg in sorted(out.rglob("seg.dcm")):
            ds = pydicom.dcmread(seg)
            segs[str(seg.relative_to(out))] = _digest(ds.pixel_array)
        results[f"{modality}/seg"] = segs
    return results


@pytest.fixture(scope="module")
def outputs(fixtures_dir: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("golden")
    return {
        "training_evaluation": _train_and_evaluate(fixtures_dir, work),
        "inference": _infer(fixtures_dir, work),
        "dicom": _dicom(fixtures_dir, work),
    }


def _differences(expected, actual, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{path}/{k}: missing" for k in expected if k not in actual]
        found += [f"{path}/{k}: not expected" for k in actual if k not in expected]
        for key in expected.keys() & actual.keys():
            found += _differences(expected[key], actual[key], f"{path}/{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        pairs = enumerate(zip(expected, actual, strict=True))
        return [d for i, (e, a) in pairs for d in _differences(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def test_outputs_equal_the_recorded_golden_outputs(outputs: dict):
    if os.environ.get("SEGDINO_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    # the runs made real outputs: every path wrote masks, and the SEG files exist
    assert len(outputs["training_evaluation"]["evaluation_masks"]) == TEST_IMAGES
    assert all(outputs["inference"].values()) and outputs["dicom"]["ultrasound/seg"]
    differences = _differences(expected, outputs)
    assert not differences, "\n".join(differences[:40])
