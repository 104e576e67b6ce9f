"""``segdino dicom`` with the bundle's ``onnx_model`` option: the exported network, no ``model.pt``."""

from __future__ import annotations

import numpy as np
import pytest

from segdino_monai.cli import main
from segdino_monai.services.predictor import BundlePredictor
from segdino_monai.utils.errors import InputError
from tests.conftest import BUNDLE, TINY_OVERRIDES
from tests.onnx_files import tiny_export

FP32 = {**TINY_OVERRIDES, "backbone_precision": "float32"}  # ONNX holds the float32 network


@pytest.mark.parametrize("name", ["us/pydicom__pydicom/US1_UNCR.dcm", "vl/pydicom__pydicom-data/examples_jpeg2k.dcm"])
def test_the_onnx_network_segments_dicom_as_pytorch(tmp_path_factory, dicom_dir, name):
    export = tiny_export(tmp_path_factory)
    path = next(dicom_dir.glob(f"**/{name.split('/')[-1]}"))
    torch_seg = BundlePredictor(str(BUNDLE), "random", export.checkpoint, overrides=FP32)
    onnx_seg = BundlePredictor(str(BUNDLE), overrides={**FP32, "onnx_model": str(export.onnx)})
    assert onnx_seg.checkpoint == str(export.onnx) and onnx_seg.model_name.endswith("(model.onnx)")
    expected, got = torch_seg(path), onnx_seg(path)
    assert got.shape == expected.shape and expected.any() and not expected.all()
    np.testing.assert_array_equal(got, expected)


def test_a_checkpoint_beside_an_onnx_model_is_one_clear_error(tmp_path_factory, tmp_path, dicom_dir, capfd):
    export = tiny_export(tmp_path_factory)
    with pytest.raises(InputError, match="both given: the ONNX file holds the whole network"):
        BundlePredictor(str(BUNDLE), "random", export.checkpoint, overrides={**FP32, "onnx_model": str(export.onnx)})
    source = next(dicom_dir.glob("**/US1_UNCR.dcm"))
    argv = ["dicom", str(source), "-o", str(tmp_path / "out"), "--bundle-root", str(BUNDLE), "--no-progress"]
    argv += ["--checkpoint", str(export.checkpoint), "--set", f"onnx_model={export.onnx}"]
    assert main(argv) == 2
    printed = "".join(capfd.readouterr())  # the bundle's logging.conf sends the command's log to the terminal
    assert "Give one of them" in printed and "Traceback" not in printed
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
