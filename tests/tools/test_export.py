from __future__ import annotations

import json
import sys
import zipfile

import numpy as np
import pytest
import torch

from segdino_monai.cli import main
from segdino_monai.tools.export import DEFAULT_TOLERANCE
from tests.onnx_files import EXPORT_SIZE, TINY_SET, random_decoder, require_onnx_extra, tiny_export


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory)


def test_onnx_export_passes_the_checker_and_matches_pytorch_at_two_batch_sizes_and_two_image_sizes(exported):
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(exported.onnx), full_check=True)
    session = ort.InferenceSession(str(exported.onnx), providers=["CPUExecutionProvider"])
    image = session.get_inputs()[0]
    assert image.name == "image" and isinstance(image.shape[0], str)  # a named, dynamic batch axis
    assert all(isinstance(d, str) for d in image.shape[2:])  # dynamic height and width
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["segdino.num_classes"] == "1" and meta["segdino.image_size"] == "32,48"
    assert meta["segdino.exporter"] == "torch.onnx dynamo" and meta["segdino.threshold"] == "0.5"
    h, w = EXPORT_SIZE
    generator = torch.Generator().manual_seed(5)
    for shape in [(1, 3, h, w), (5, 3, h, w), (1, 3, 64, 96), (2, 3, 64, 96)]:
        x = torch.randn(*shape, generator=generator)
        (logits,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = exported.network(x).numpy()
        assert logits.shape == (shape[0], 1, *shape[2:])
        assert np.abs(logits - expected).max() < DEFAULT_TOLERANCE, shape
        decided = np.abs(expected) > DEFAULT_TOLERANCE  # where rounding cannot flip the mask
        assert ((logits > 0) == (expected > 0))[decided].all()
        assert 0.1 < (expected > 0).mean() < 0.9  # a mask with both classes: the comparison means something
    assert sorted(p.name for p in exported.onnx.parent.iterdir()) == ["model.onnx", "model.pt"]  # no temporary left


def test_export_refuses_a_model_outside_the_tolerance_and_writes_nothing(exported, tmp_path, errors):
    """ONNX Runtime's float32 kernels round differently from PyTorch's: a tolerance of 0 cannot be met."""
    out = tmp_path / "out" / "model.onnx"
    argv = ["export", "-o", str(out), "--backbone-weights", "random", "--checkpoint", str(exported.checkpoint)]
    assert main([*argv, "--set", TINY_SET, "--image-size", "32", "32", "--tolerance", "0"]) == 1
    (line,) = errors
    assert line.startswith("The onnx export does not match PyTorch: max absolute logit difference")
    assert "(tolerance 0)" in line and line.endswith("nothing was written.")
    assert not out.exists() and not list(out.parent.iterdir())


def test_torchscript_export_twice_replaces_the_file_whole(tmp_path):
    out = tmp_path / "model.ts"
    for seed in (1, 2):
        net = random_decoder(tmp_path / f"decoder{seed}.pt", seed)
        argv = ["export", "--format", "torchscript", "-o", str(out), "--backbone-weights", "random"]
        argv += ["--checkpoint", str(tmp_path / f"decoder{seed}.pt"), "--set", TINY_SET, "--image-size", "32", "32"]
        assert main(argv) == 0
        loaded = torch.jit.load(str(out))
        for batch in (1, 4):  # the traced batch is 2: both others run
            x = torch.randn(batch, 3, 32, 32)
            with torch.no_grad():
                assert torch.allclose(loaded(x), net(x), atol=DEFAULT_TOLERANCE, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder1.pt", "decoder2.pt", "model.ts"]
    with zipfile.ZipFile(out) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/segdino.json"))
        meta = json.loads(archive.read(name))
    assert meta["exporter"] == "torch.jit.trace" and meta["dynamic_axes"] == "batch" and meta["num_classes"] == "1"


def test_export_bad_output_or_size_is_a_clear_error_before_any_model_work(tmp_path, errors):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "models").mkdir()
    base = ["--backbone-weights", "random", "--checkpoint", str(tmp_path / "none.pt"), "--set", TINY_SET]
    cases = [
        (["-o", str(tmp_path / "models")], f"-o {tmp_path / 'models'} is a folder; give the file to write"),
        (["-o", str(tmp_path / "a_file" / "m.onnx")], f"-o {tmp_path / 'a_file' / 'm.onnx'}: {tmp_path / 'a_file'}"),
        (["-o", str(tmp_path / "m.onnx")], f"Trained decoder not found: {tmp_path / 'none.pt'}"),
    ]
    for argv, message in cases:
        errors.clear()
        assert main(["export", *argv, *base]) == 2, argv
        (line,) = errors
        assert line.startswith(message), line
    random_decoder(tmp_path / "model.pt", seed=0)
    errors.clear()
    argv = ["export", "-o", str(tmp_path / "m.ts"), "--format", "torchscript", "--backbone-weights", "random"]
    argv += ["--checkpoint", str(tmp_path / "model.pt"), "--set", TINY_SET, "--image-size", "32", "40"]
    assert main(argv) == 2
    assert errors == ["--image-size 32 40: both must be positive multiples of the patch size 16."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "model.pt", "models"]


def test_export_without_the_onnx_extra_says_how_to_install_it(tmp_path, errors, monkeypatch):
    require_onnx_extra()
    random_decoder(tmp_path / "model.pt", seed=0)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # what `import onnxscript` meets where it is not installed
    argv = ["export", "-o", str(tmp_path / "m.onnx"), "--backbone-weights", "random"]
    assert main([*argv, "--checkpoint", str(tmp_path / "model.pt"), "--set", TINY_SET]) == 2
    assert errors == [
        "segdino export --format onnx needs onnxscript, which is not installed: pip install 'segdino-monai[onnx]'."
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
