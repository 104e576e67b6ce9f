from __future__ import annotations

import numpy as np
import torch

from tests.conftest import TINY_VIT
from tests.onnx_files import random_decoder, require_onnx_extra

CONFIGS = "bundle/configs"


def test_monai_bundle_onnx_export_gives_a_dynamic_model_that_matches_pytorch(tmp_path):
    """``python -m monai.bundle onnx_export`` as the model zoo documents it; the dynamic axes go in converter_kwargs."""
    require_onnx_extra()
    import onnx
    import onnxruntime as ort
    from monai.bundle import onnx_export

    net = random_decoder(tmp_path / "model.pt", seed=4)
    axes = {0: "batch", 2: "height", 3: "width"}
    onnx_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.onnx"),
        ckpt_file=str(tmp_path / "model.pt"),
        meta_file=f"{CONFIGS}/metadata.json",
        config_file=f"{CONFIGS}/inference.json",
        input_shape=[2, 3, 32, 32],
        converter_kwargs={"input_names": ["image"], "output_names": ["logits"], "dynamic_axes": {"image": axes}},
        **{"backbone_weights": "random", "network_def#backbone_kwargs": TINY_VIT, "backbone_precision": "float32"},
    )
    onnx.checker.check_model(str(tmp_path / "model.onnx"), full_check=True)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    for shape in [(1, 3, 32, 32), (3, 3, 32, 32), (1, 3, 48, 64)]:
        x = torch.randn(*shape)
        (logits,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = net(x).numpy()
        assert np.abs(logits - expected).max() < 1e-4, shape
