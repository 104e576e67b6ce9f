"""A short real run on a fixture dataset: 2 epochs on CVC-EndoSceneStill with a tiny random DINOv3, evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest

from segdino_monai.data import prepare_datalist
from tests.bundle.conftest import EVALUATE, TRAIN, tiny_overrides, workflow


@pytest.fixture(scope="package")
def evaluated_run(tmp_path_factory, fixtures_dir) -> Path:
    """The evaluation folder (metrics, masks, report, training logs) of a 2-epoch fixture run."""
    work = tmp_path_factory.mktemp("report_run")
    datalist = work / "datalist.json"
    prepare_datalist(fixtures_dir / "endoscopy" / "cvc_endoscene_512", datalist, layout="cvc")
    overrides = tiny_overrides(work, datalist=str(datalist), modality="endoscopy")
    for config, steps in ((TRAIN, {"train#trainer#max_epochs": 2}), (EVALUATE, {})):
        flow = workflow(config, "train", **overrides, **steps)
        flow.run()
        flow.finalize()
    return work / "eval"
