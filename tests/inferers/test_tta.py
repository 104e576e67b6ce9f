"""Test-time augmentation: the identity view is the plain prediction, and the average of the views is computed as
documented (each view's probabilities flipped or resized back, then averaged)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from segdino_monai.inferers import TTAInferer, TTAPredictiond
from segdino_monai.networks import SegDINO
from segdino_monai.utils.errors import InputError
from tests.conftest import TINY_VIT


@pytest.fixture(scope="module")
def networks() -> dict[int, SegDINO]:
    """Tiny SegDINOs (random backbone and head) with one and with three output channels, in evaluation mode."""
    torch.manual_seed(0)
    return {c: SegDINO(out_channels=c, backbone_kwargs=TINY_VIT).eval() for c in (1, 3)}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_identity_view_alone_is_plain_inference(networks, images):
    for channels, network in networks.items():
        plain = network(images)
        tta = TTAInferer(flips=[], scales=[1.0], sigmoid=channels == 1)
        assert tta.num_views == 1
        logits = tta(images, network)
        # one channel: the logits themselves; several: the log-probabilities (the same softmax)
        torch.testing.assert_close(
            logits, plain if channels == 1 else torch.log_softmax(plain, 1), rtol=1e-5, atol=1e-5
        )
        activation = torch.sigmoid if channels == 1 else lambda x: torch.softmax(x, dim=1)
        torch.testing.assert_close(tta.probabilities(images, network), activation(plain), rtol=0, atol=1e-6)
    # the same through a sliding window inferer, as the bundle's inference runs it
    window = SlidingWindowInferer(roi_size=(32, 32), sw_batch_size=4, overlap=0.25, mode="gaussian")
    logits = TTAInferer(window, flips=[], scales=[1.0])(images, networks[1])
    torch.testing.assert_close(logits, window(images, networks[1]), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_flips_average_the_probabilities_of_the_flipped_predictions(networks, images):
    network = networks[1]
    views = [
        torch.sigmoid(network(images)),
        torch.sigmoid(network(images.flip(3))).flip(3),  # mirror image, its prediction mirrored back
        torch.sigmoid(network(images.flip(2))).flip(2),  # upside down, and back
    ]
    expected = sum(views) / 3
    tta = TTAInferer(flips=["horizontal", "vertical"])
    assert tta.num_views == 3
    torch.testing.assert_close(tta.probabilities(images, network), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.sigmoid(tta(images, network)), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(expected, views[0], atol=1e-3)  # the flips do change the prediction
    # the plain logits given as the identity view: the same result, one network run fewer
    calls = []
    handle = network.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        reused = tta(images, network, identity=network(images))
    finally:
        handle.remove()
    assert calls == [2, 4]  # the plain run above, then one batch of the two flipped views of both images
    torch.testing.assert_close(torch.sigmoid(reused), expected, rtol=0, atol=1e-6)


@torch.no_grad()
def test_multiclass_views_and_scales(networks, images):
    network = networks[3]
    expected = 0
    for size in ((16, 32), (32, 48)):  # scale 0.5 (rounded to the 16-pixel patch: 16 x 24 -> 16 x 32) and 1
        view = F.interpolate(images, size=size, mode="bilinear", antialias=True) if size[0] < 32 else images
        for dims in ((), (3,)):
            probs = torch.softmax(network(view.flip(dims) if dims else view), dim=1)
            probs = probs.flip(dims) if dims else probs
            expected = (
                expected + F.interpolate(probs, size=(32, 48), mode="bilinear") if size[0] < 32 else expected + probs
            )
    expected = expected / 4
    tta = TTAInferer(flips=["horizontal"], scales=[0.5, 1.0], sigmoid=False)
    logits = tta(images, network)
    torch.testing.assert_close(torch.softmax(logits, dim=1), expected.float(), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.softmax(logits, dim=1).sum(dim=1), torch.ones(2, 32, 48), rtol=0, atol=1e-5)


@torch.no_grad()
def test_prediction_transform_adds_the_tta_logits_beside_the_plain_ones(networks, images):
    network = networks[1]
    plain = MetaTensor(network(images[:1])[0], meta={"filename_or_obj": "a.png"})
    tta = TTAInferer()
    data = TTAPredictiond(network, tta)({"image": images[0], "pred": plain})
    assert data["pred"] is plain
    assert isinstance(data["tta_pred"], MetaTensor) and data["tta_pred"].meta["filename_or_obj"] == "a.png"
    torch.testing.assert_close(data["tta_pred"].as_tensor(), tta(images[:1], network)[0], rtol=1e-5, atol=1e-5)


def test_bad_options_are_clear_errors():
    with pytest.raises(InputError, match="tta_flips: unknown flip 'sideways'"):
        TTAInferer(flips=["sideways"])
    with pytest.raises(InputError, match="tta_scales: 0 is not a positive number"):
        TTAInferer(scales=[1.0, 0])
    with pytest.raises(InputError, match="tta_scales is empty"):
        TTAInferer(scales=[])
    with pytest.raises(InputError, match="tta_flips must be a list"):
        TTAInferer(flips=3)  # type: ignore[arg-type]
    assert TTAInferer(flips="Horizontal", scales=["0.75", 1]).num_views == 4  # as a command line may give them
