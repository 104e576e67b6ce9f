"""``segdino dicom`` and ``monai.bundle run inference`` give the same mask in bfloat16 too (issue 23, item 4).

The bundle's DataLoader workers preprocess on one intra-op thread (PyTorch sets it); the DICOM path preprocessed in
its own process on all of them, and PyTorch's bilinear resize differs in the last bit between the two. float32 hides
that bit, a bfloat16 backbone does not: boundary pixels moved. The preprocessing now runs on one thread everywhere
(``OneThreadCompose``); this runs both paths in this process, with the bundle's default of 2 workers.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from segdino_monai.networks.nets.dinov3_backbone import use_bf16
from tests.bundle.conftest import BUNDLE, CONFIGS, INFERENCE, workflow
from tests.services.dicom.test_one_pipeline import SOURCE

NATIVE_BF16 = use_bf16("auto", torch.device("cpu"))


@pytest.fixture(scope="module")
def vits16_decoder(tmp_path_factory):
    """A seeded random decoder for the real ViT-S/16 (a tiny ViT's bf16 error is too small to move a pixel)."""
    from segdino_monai.networks import SegDINO

    torch.manual_seed(0)
    return SegDINO(backbone="vits16").save_decoder(tmp_path_factory.mktemp("vits16") / "model.pt")


@pytest.fixture
def two_threads():
    """At least 2 intra-op threads in this process (as any multi-core machine has); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "precision",
    [
        pytest.param(
            "auto",
            marks=pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16: 'auto' runs float32"),
        ),
        "float32",
    ],
)
def test_bundle_workers_and_dicom_segmenter_give_the_same_mask(
    precision, dicom_dir, vits16_decoder, tmp_path, two_threads
):
    from segdino_monai.services.dicom_batch import DicomSegmenter

    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(dicom_dir / SOURCE, inputs / "image.dcm")
    # at 256x256 the bilinear resize of this file's 721x997 region differs between 1 and 2 threads (not at 64x64)
    overrides = {"backbone": "vits16", "spatial_size": [256, 256], "backbone_precision": precision}
    seen: dict[str, list[torch.Tensor]] = {"bundle": [], "dicom": []}

    def recorder(name):
        return lambda module, args, output: seen[name].append(torch.as_tensor(args[0]).detach().cpu().clone())

    flow = workflow(
        [INFERENCE, str(CONFIGS / "ultrasound.json")],
        "infer",
        bundle_root=str(BUNDLE),
        dataset_dir=str(inputs),
        output_dir=str(tmp_path / "bundle"),
        ckpt_dir=str(vits16_decoder.parent),
        backbone_weights="random",
        num_workers=2,  # the bundle's default: preprocessing in DataLoader workers
        **overrides,
    )
    flow.parser.get_parsed_content("network").register_forward_hook(recorder("bundle"))
    flow.run()
    flow.finalize()
    by_bundle = np.asarray(Image.open(tmp_path / "bundle" / "image_mask.png")) > 0

    segmenter = DicomSegmenter(str(BUNDLE), "random", vits16_decoder, "ultrasound", overrides=overrides)
    segmenter.network.register_forward_hook(recorder("dicom"))
    by_dicom = segmenter(inputs / "image.dcm") > 0

    assert segmenter.network.backbone.precision == precision
    (bundle_input,), (dicom_input,) = seen["bundle"], seen["dicom"]
    assert 0 < by_dicom.sum() < by_dicom.size
    assert np.array_equal(by_bundle, by_dicom), f"{int((by_bundle != by_dicom).sum())} pixels differ"
    assert torch.equal(bundle_input, dicom_input), "the network's inputs differ"
