"""An evaluation whose images share names (``a.jpg``/``a.png``, ``img.png`` in two folders): distinct masks and rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segdino_monai.networks import SegDINO
from tests.bundle.conftest import EVALUATE, tiny_overrides, workflow
from tests.conftest import TINY_VIT
from tests.reporting.test_page import _Page


@pytest.fixture
def shared_names_dataset(fixtures_dir, tmp_path) -> tuple[Path, dict[str, Path]]:
    """Four real CVC-EndoSceneStill cases saved as ``train/img.png``, ``val/img.png``, ``a.jpg`` and ``a.png``."""
    cvc = fixtures_dir / "endoscopy" / "cvc_endoscene_512"
    cases = sorted((cvc / "images").iterdir())[:4]
    root = tmp_path / "data"
    targets = ["train/img.png", "val/img.png", "a.jpg", "a.png"]
    labels = {}
    for case, target in zip(cases, targets, strict=True):
        image = root / target
        image.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(case) as picture:
            picture.save(image)
        labels[target] = cvc / "masks" / case.name
    test = [{"image": str(root / t), "label": str(labels[t])} for t in targets]
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"training": test[:1], "validation": test[:1], "test": test}))
    return datalist, {t: root / t for t in targets}


def test_evaluation_writes_and_reports_every_image_of_a_shared_name(shared_names_dataset, tmp_path):
    datalist, images = shared_names_dataset
    (tmp_path / "models").mkdir()
    torch.manual_seed(0)
    torch.save(SegDINO(backbone_kwargs=TINY_VIT).state_dict(), tmp_path / "models" / "model.pt")
    flow = workflow(EVALUATE, "train", **tiny_overrides(tmp_path, datalist=str(datalist), save_predictions=True))
    flow.run()
    run = tmp_path / "eval"

    rows = list(csv.DictReader(open(run / "metrics_per_image.csv", encoding="utf-8")))
    assert sorted(r["filename"] for r in rows) == sorted(str(p) for p in images.values())  # one row each
    outputs = {"train/img.png": "train/img", "val/img.png": "val/img", "a.jpg": "a.jpg", "a.png": "a.png"}
    labels = {}
    for target, name in outputs.items():
        prediction = np.asarray(Image.open(run / "predictions" / f"{name}_mask.png")) > 0
        labels[target] = np.asarray(Image.open(run / "predictions" / f"{name}_label.png")) > 0
        row = next(r for r in rows if r["filename"] == str(images[target]))
        inter, total = (prediction & labels[target]).sum(), prediction.sum() + labels[target].sum()
        assert float(row["test_mean_dice"]) == pytest.approx(2 * inter / total if total else 1.0, abs=1e-5)
    assert not np.array_equal(labels["train/img.png"], labels["val/img.png"])  # each case kept its own reference
    assert not np.array_equal(labels["a.jpg"], labels["a.png"])

    page = (run / "report.html").read_text(encoding="utf-8")
    assert "is missing" not in page  # the report found every case's masks by the writer's names
    shown = [row[1] for row in _Page(page).tables["per-image"][1:]]
    assert sorted(shown) == sorted(outputs)  # distinct names, not img.png twice
    captions = _Page(page).captions
    for name in outputs:  # every case is drawn (4 worst of 4 images), titled by its distinct name
        assert sum(f": {name} (" in caption for caption in captions) == 1, captions
