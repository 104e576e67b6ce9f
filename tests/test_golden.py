"""Golden outputs: the fixture runs of every path give the outputs recorded before the pipelines were reshaped:
training (2 epochs, fixed seed), evaluation, inference (resize and sliding window, every modality) and
``segdino dicom``.

Goldens must hold on any CPU that runs CI, not only on the machine that recorded them. So every run is in
float32 (``backbone_precision`` ``auto`` means bf16 where the CPU has it, and bf16 rounds differently from CPU to
CPU), and nothing is compared by an exact hash: another CPU's kernels sum in another order and flip a few boundary
pixels or the last digits of a trained weight.

- Masks (PNG and DICOM SEG pixels) are recorded whole (zlib, base64) and compared per mask: the same shape, at
  most :data:`MAX_DIFFERENT_PIXELS` (or :data:`MAX_DIFFERENT_FRACTION` of a large mask) pixels differ, and each
  class of at least :data:`DICE_MIN_PIXELS` pixels has Dice >= :data:`MIN_DICE` against the recorded mask.
- The trained decoder is compared by its outputs: logits for fixed seeded features, within :data:`LOGIT_ATOL`.
- The evaluation's per-image CSV by its numbers, within :data:`METRIC_TOLERANCE`.

The bf16 path (where the CPU has native bf16) is checked against the same float32 goldens with its own, looser
tolerance. ``SEGDINO_GOLDEN_EXACT=1`` demands identical outputs (use it on the machine that recorded them, after a
change that must not move a pixel). ``SEGDINO_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` rewrites
``tests/golden/outputs.json``: only when a change of output is intended, and the commit must say which outputs
changed and why.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import zlib
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
FLOAT32 = {"backbone_precision": "float32"}

#: float32 on another CPU: a few boundary pixels may flip, nothing more.
MAX_DIFFERENT_PIXELS, MAX_DIFFERENT_FRACTION, MIN_DICE, DICE_MIN_PIXELS = 8, 1e-4, 0.999, 2000
#: bf16 against the float32 goldens (measured on AVX512-BF16: at most 0.23% of a mask, Dice >= 0.998).
BF16_MAX_DIFFERENT_FRACTION, BF16_MIN_DICE = 0.01, 0.99
LOGIT_ATOL = 1e-4
METRIC_TOLERANCE = {"test_hd95": 1.5, "default": 0.002}


def _encode(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    values, counts = np.unique(array, return_counts=True)
    return {
        "shape": list(array.shape),
        "counts": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True) if v != 0},
        "pixels": base64.b64encode(zlib.compress(array.tobytes(), 9)).decode("ascii"),
    }


def _decode(record: dict) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(record["pixels"]))
    return np.frombuffer(raw, dtype=np.uint8).reshape(record["shape"])


def _masks(folder: Path) -> dict:
    """Every ``*_mask.png`` under ``folder`` (relative name: encoded mask)."""
    found = sorted(p for p in folder.rglob("*.png") if p.name.endswith("mask.png"))
    return {str(p.relative_to(folder)): _encode(np.asarray(Image.open(p))) for p in found}


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return [dict(row) for row in csv.DictReader(f)]


def _images(fixtures: Path, folder: str, start: int, count: int) -> list[Path]:
    return sorted((fixtures / folder / "images").iterdir())[start : start + count]


def _pair(image: Path) -> dict:
    masks = {p.stem: p for p in (image.parent.parent / "masks").iterdir()}
    return {"image": str(image), "label": str(masks[image.stem])}


def _decoder_logits(checkpoint: Path) -> list:
    """The trained decoder's logits for fixed seeded backbone features: its outputs, not its bytes."""
    from segdino_monai.networks import SegDINO
    from tests.conftest import TINY_VIT

    net = SegDINO(backbone_kwargs=TINY_VIT).eval()
    net.load_decoder(checkpoint)
    generator = torch.Generator().manual_seed(0)
    channels = net.backbone.out_channels
    features = [torch.randn(2, c, 4, 4, generator=generator) for c in channels]
    with torch.no_grad():
        logits = net.decode(features, (8, 8))
    return [float(v) for v in logits.flatten()]


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
    logits = _decoder_logits(work / "models" / "model.pt")
    flow = workflow(EVALUATE, "eval", **tiny_overrides(work, **common, save_predictions=True))
    flow.run()
    flow.finalize()
    rows = _csv_rows(work / "eval" / "metrics_per_image.csv")
    for row in rows:  # the path is where this checkout's fixtures are: keep the name
        row["filename"] = Path(row["filename"]).name
    masks = _masks(work / "eval" / "predictions")
    return {"decoder_logits": logits, "evaluation_csv": rows, "evaluation_masks": masks}


def _random_decoder(work: Path) -> Path:
    """A seeded untrained decoder: its masks are far from empty or full, so any change of pixels shows."""
    from segdino_monai.networks import SegDINO
    from tests.conftest import TINY_VIT

    checkpoint = work / "random_decoder" / "model.pt"
    if not checkpoint.is_file():
        torch.manual_seed(0)
        checkpoint.parent.mkdir()
        SegDINO(backbone_kwargs=TINY_VIT).save_decoder(checkpoint)
    return checkpoint


def _infer(fixtures: Path, work: Path, precision: str, modes: tuple[str, ...]) -> dict:
    ckpt_dir = str(_random_decoder(work).parent)
    results = {}
    for modality, sources in INFERENCE_INPUTS.items():
        folder = work / f"images_{modality}"
        if not folder.is_dir():
            folder.mkdir()
            for source, start, count in sources:
                for image in _images(fixtures, source, start, count):
                    (folder / f"{Path(source).name}_{image.name}").symlink_to(image)
        for mode in modes:
            out = work / f"infer_{modality}_{mode}_{precision}"
            overrides = {
                "dataset_dir": str(folder),
                "inference_mode": mode,
                "output_dir": str(out),
                "ckpt_dir": ckpt_dir,
                "backbone_precision": precision,
            }
            configs = [INFERENCE, str(CONFIGS / f"{modality}.json")]
            flow = workflow(configs, "infer", **tiny_overrides(work, **overrides))
            flow.run()
            flow.finalize()
            results[f"{modality}/{mode}"] = _masks(out)
    return results


def _dicom(fixtures: Path, work: Path, precision: str, modalities: tuple[str, ...]) -> dict:
    import pydicom

    from segdino_monai.services.dicom_batch import run_dicom
    from segdino_monai.services.predictor import BundlePredictor
    from tests.conftest import TINY_OVERRIDES

    results = {}
    folders = {"ultrasound": "dicom/us", "endoscopy": "dicom/vl"}
    for modality in modalities:
        decoder = _random_decoder(work)
        overrides = {**TINY_OVERRIDES, "backbone_precision": precision}
        segmenter = BundlePredictor(str(Path(TRAIN).parents[1]), "random", decoder, modality, overrides=overrides)
        out = work / f"dicom_{modality}_{precision}"
        run_dicom([fixtures / folders[modality]], out, segmenter, progress=False)
        results[f"{modality}/masks"] = _masks(out)
        segs = {}
        for seg in sorted(out.rglob("seg.dcm")):
            ds = pydicom.dcmread(seg)
            segs[str(seg.relative_to(out))] = _encode(ds.pixel_array)
        results[f"{modality}/seg"] = segs
    return results


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("golden")


@pytest.fixture(scope="module")
def outputs(fixtures_dir: Path, work: Path) -> dict:
    return {
        "training_evaluation": _train_and_evaluate(fixtures_dir, work),
        "inference": _infer(fixtures_dir, work, "float32", ("resize", "native")),
        "dicom": _dicom(fixtures_dir, work, "float32", ("ultrasound", "endoscopy")),
    }


def _mask_differences(
    path: str, expected: dict, actual: dict, max_fraction: float, min_dice: float, exact: bool = False
) -> list[str]:
    """Why ``actual`` is not ``expected`` within the tolerance (an empty list when it is)."""
    if expected["shape"] != actual["shape"]:
        return [f"{path}: shape {actual['shape']}, recorded {expected['shape']}"]
    want, got = _decode(expected), _decode(actual)
    different = int(np.count_nonzero(want != got))
    if exact:
        return [f"{path}: {different} pixels differ (SEGDINO_GOLDEN_EXACT=1)"] if different else []
    found = []
    allowed = max(MAX_DIFFERENT_PIXELS, int(max_fraction * want.size))
    if different > allowed:
        found.append(f"{path}: {different} of {want.size} pixels differ (at most {allowed})")
    for value in np.union1d(np.unique(want), np.unique(got)):
        if value == 0 or np.count_nonzero(want == value) < DICE_MIN_PIXELS:
            continue
        a, b = want == value, got == value
        dice = 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
        if dice < min_dice:
            found.append(f"{path}: Dice {dice:.5f} of class {int(value)} against the recorded mask (>= {min_dice})")
    return found


def _masks_differences(expected: dict, actual: dict, path: str) -> list[str]:
    """The float32 masks against the goldens (identical with ``SEGDINO_GOLDEN_EXACT=1``)."""
    exact = os.environ.get("SEGDINO_GOLDEN_EXACT") == "1"
    found = [f"{path}/{k}: missing" for k in expected if k not in actual]
    found += [f"{path}/{k}: not expected" for k in actual if k not in expected]
    for key in sorted(expected.keys() & actual.keys()):
        tolerance = (MAX_DIFFERENT_FRACTION, MIN_DICE, exact)
        found += _mask_differences(f"{path}/{key}", expected[key], actual[key], *tolerance)
    return found


def _close(expected: str, actual: str, tolerance: float) -> bool:
    try:
        want, got = float(expected), float(actual)
    except ValueError:
        return expected == actual
    if os.environ.get("SEGDINO_GOLDEN_EXACT") == "1":
        return expected == actual
    return math.isclose(want, got, abs_tol=tolerance) or (math.isnan(want) and math.isnan(got))


def _csv_differences(expected: list[dict], actual: list[dict]) -> list[str]:
    if len(expected) != len(actual):
        return [f"evaluation_csv: {len(actual)} rows, recorded {len(expected)}"]
    found = []
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want.keys() != got.keys():
            found.append(f"evaluation_csv[{i}]: columns {sorted(got)}, recorded {sorted(want)}")
            continue
        for column in want:
            tolerance = METRIC_TOLERANCE.get(column, METRIC_TOLERANCE["default"])
            if not _close(want[column], got[column], tolerance):
                found.append(f"evaluation_csv[{i}].{column}: {got[column]}, recorded {want[column]} (±{tolerance})")
    return found


def _logit_differences(expected: list[float], actual: list[float]) -> list[str]:
    want, got = np.asarray(expected), np.asarray(actual)
    if want.shape != got.shape:
        return [f"decoder_logits: {got.shape} values, recorded {want.shape}"]
    exact = os.environ.get("SEGDINO_GOLDEN_EXACT") == "1"
    worst = float(np.max(np.abs(want - got)))
    if (exact and worst > 0) or worst > LOGIT_ATOL:
        return [f"decoder_logits: largest difference {worst:.3g} (at most {0 if exact else LOGIT_ATOL})"]
    return []


def test_outputs_equal_the_recorded_golden_outputs(outputs: dict):
    if os.environ.get("SEGDINO_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    # the runs made real outputs: every path wrote masks, and the SEG files exist
    trained = outputs["training_evaluation"]
    assert len(trained["evaluation_masks"]) == TEST_IMAGES
    assert all(outputs["inference"].values()) and outputs["dicom"]["ultrasound/seg"]
    assert np.std(trained["decoder_logits"]) > 0.01, "the trained decoder's logits are constant"

    recorded = expected["training_evaluation"]
    differences = _logit_differences(recorded["decoder_logits"], trained["decoder_logits"])
    differences += _csv_differences(recorded["evaluation_csv"], trained["evaluation_csv"])
    differences += _masks_differences(recorded["evaluation_masks"], trained["evaluation_masks"], "evaluation_masks")
    for part in ("inference", "dicom"):
        assert expected[part].keys() == outputs[part].keys()
        for key in expected[part]:
            differences += _masks_differences(expected[part][key], outputs[part][key], f"{part}/{key}")
    assert not differences, "\n".join(differences[:40])


def test_bf16_outputs_stay_close_to_the_float32_goldens(fixtures_dir: Path, work: Path):
    from segdino_monai.networks.nets.dinov3_backbone import use_bf16

    if not use_bf16("auto", torch.device("cpu")):
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX): the bundle's 'auto' precision runs float32")
    expected = json.loads(GOLDEN.read_text())
    actual = {
        "inference": _infer(fixtures_dir, work, "bfloat16", ("resize",)),
        "dicom": _dicom(fixtures_dir, work, "bfloat16", ("ultrasound",)),
    }
    differences = []
    for part, results in actual.items():
        for key, masks in results.items():
            recorded = expected[part][key]
            for name, mask in masks.items():
                differences += _mask_differences(
                    f"{part}/{key}/{name}", recorded[name], mask, BF16_MAX_DIFFERENT_FRACTION, BF16_MIN_DICE
                )
    assert sum(len(masks) for results in actual.values() for masks in results.values()) >= 20
    assert not differences, "\n".join(differences[:40])
