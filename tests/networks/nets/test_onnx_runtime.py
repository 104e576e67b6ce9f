from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from segdino_monai.cli import main
from segdino_monai.networks import OnnxRuntimeNetwork
from segdino_monai.utils.errors import InputError
from tests.onnx_files import TINY_SET, tiny_export


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory)


def test_the_bundle_with_onnx_model_writes_the_masks_of_the_pytorch_network(exported, fixtures_dir, tmp_path):
    """Same preprocessing, postprocessing and writers; ONNX Runtime needs neither backbone weights nor model.pt."""
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((fixtures_dir / "endoscopy" / "kvasir_seg_256" / "images").glob("*.jpg"))[:3]:
        shutil.copy(path, images / path.name)
    common = ["infer", "--dataset-dir", str(images), "--spatial-size", "64", "64", "--set", "num_workers=0"]
    # PyTorch in float32, as exported (the bundle's default "auto" runs the backbone in bf16 where the CPU has it)
    pytorch = ["--output-dir", str(tmp_path / "pytorch"), "--backbone-weights", "random", "--set", TINY_SET]
    pytorch += ["--ckpt-dir", str(exported.checkpoint.parent), "--set", "backbone_precision=float32"]
    assert main([*common, *pytorch]) == 0
    onnx = ["--output-dir", str(tmp_path / "onnx"), "--backbone-weights", str(tmp_path / "no_weights.pth")]
    onnx += ["--ckpt-dir", str(tmp_path / "no_models"), "--set", f"onnx_model={exported.onnx}"]
    assert main([*common, *onnx]) == 0
    masks = sorted((tmp_path / "pytorch").glob("*_mask.png"))
    assert len(masks) == 3
    for path in masks:
        expected, actual = np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "onnx" / path.name))
        assert expected.shape == actual.shape and expected.ndim == 2
        assert 0.05 < (expected > 0).mean() < 0.95  # both classes present: equality means something
        np.testing.assert_array_equal(actual, expected)
    assert (tmp_path / "onnx" / "summary.json").is_file()


def test_onnx_runtime_network_runs_any_batch_and_size_and_keeps_the_device(exported):
    runtime = OnnxRuntimeNetwork(exported.onnx, threads=1, out_channels=1)
    assert runtime.metadata["num_classes"] == "1" and runtime.metadata["backbone"] == "vit_small_patch16_dinov3_qkvb"
    assert runtime.patch_size == 16  # the TTA inferer pads to multiples of it
    for shape in [(2, 3, 48, 32), (1, 3, 80, 64)]:
        x = torch.randn(*shape, dtype=torch.float64)  # any float input is run as float32
        logits = runtime(x)
        with torch.no_grad():
            expected = exported.network(x.float())
        assert logits.dtype == torch.float32 and logits.device == x.device and logits.shape == (shape[0], 1, *shape[2:])
        assert torch.allclose(logits, expected, atol=1e-4, rtol=0)


def test_onnx_runtime_network_bad_files_and_class_counts_are_clear_errors(exported, tmp_path):
    missing = tmp_path / "none.onnx"
    with pytest.raises(InputError, match=f"ONNX model {missing} not found. Write it with `segdino export"):
        OnnxRuntimeNetwork(missing)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf" * 10)
    with pytest.raises(InputError, match=f"ONNX model {garbage} cannot be loaded by ONNX Runtime"):
        OnnxRuntimeNetwork(garbage)
    with pytest.raises(InputError, match=r"gives 1 output channel\(s\), the bundle's num_classes is 3. Pass"):
        OnnxRuntimeNetwork(exported.onnx, out_channels=3)
