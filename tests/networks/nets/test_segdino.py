from __future__ import annotations

import pytest
import torch

from segdino_monai.networks import SegDINO
from segdino_monai.utils.errors import InputError
from tests.conftest import TINY_VIT
from tests.networks.dinov3_files import tiny_timm_model, write_timm_file


def head_parameters(width: int, out_channels: int, proj=(96, 192, 384, 768), aligned=128) -> int:
    """The paper head's size from its layer shapes: 1x1 (bias) projections, 3x3 (no bias) convs, 1x1 (bias) out."""
    projections = sum(width * p + p for p in proj)
    aligns = sum(9 * p * aligned for p in proj)
    return projections + aligns + len(proj) * aligned * out_channels + out_channels


def trainable(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def tiny_net(**kwargs) -> SegDINO:
    return SegDINO(backbone_kwargs=TINY_VIT, **kwargs)


def test_vits16_has_the_papers_parameter_count():
    net = SegDINO(out_channels=1, backbone="vits16")
    assert trainable(net) == head_parameters(384, 1) == 2_213_793
    logits = net(torch.rand(1, 3, 256, 256))
    assert logits.shape == (1, 1, 256, 256)


@pytest.mark.parametrize(("backbone", "width", "out_channels"), [("vits16", 384, 3), ("vitb16", 768, 1)])
def test_parameter_count_other_configs(backbone, width, out_channels):
    net = SegDINO(out_channels=out_channels, backbone=backbone)
    assert trainable(net) == head_parameters(width, out_channels)
    if backbone == "vitb16":
        assert trainable(net) == 2_766_753  # the research notes' hand count for ViT-B/16


@pytest.mark.parametrize(("batch", "size", "out_channels"), [(1, (32, 32), 1), (2, (64, 96), 1), (3, (48, 32), 4)])
def test_logits_at_input_resolution(batch, size, out_channels):
    net = tiny_net(out_channels=out_channels)
    assert net(torch.rand(batch, 3, *size)).shape == (batch, out_channels, *size)


def test_variant_head_with_norm_and_activation():
    net = tiny_net(out_channels=2, hidden_channels=64, norm="batch", act="gelu")
    assert trainable(net) > head_parameters(48, 2, proj=(96, 192, 384, 768))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 2, 32, 32)


def test_bad_inputs_and_arguments():
    net = tiny_net()
    with pytest.raises(ValueError, match="multiples of the patch size 16, got 250x256"):
        net(torch.rand(1, 3, 250, 256))
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, H, W\)"):
        net(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="in_channels must be 3"):
        SegDINO(in_channels=1, backbone_kwargs=TINY_VIT)
    with pytest.raises(ValueError, match="spatial_dims must be 2"):
        SegDINO(spatial_dims=3, backbone_kwargs=TINY_VIT)
    with pytest.raises(ValueError, match="one width per tapped block: 2 taps, 4 widths"):
        SegDINO(taps=(1, 3), backbone_kwargs=TINY_VIT)


def test_training_step_leaves_the_backbone_frozen():
    torch.manual_seed(0)
    net = tiny_net(out_channels=1)
    net.train()
    assert net.aligner.training and net.decoder.training
    assert not any(m.training for m in net.backbone.model.modules())
    backbone_before = {k: v.clone() for k, v in net.backbone.model.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in net.state_dict().items()}
    # Even an optimizer over *all* parameters, with weight decay, must not move the frozen ones.
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
    loss.backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.decoder.parameters())
    optimizer.step()
    after = net.backbone.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in backbone_before.items())
    assert all(not torch.equal(v, net.state_dict()[k]) for k, v in decoder_before.items())


def test_decoder_round_trip(tmp_path):
    weights = write_timm_file(tiny_timm_model(), tmp_path / "backbone.safetensors")
    torch.manual_seed(0)
    trained = SegDINO(out_channels=2, weights=weights, backbone_kwargs=TINY_VIT)
    path = trained.save_decoder(tmp_path / "models" / "model.pt")
    assert set(torch.load(path, weights_only=True)) == set(trained.state_dict())
    assert not any(k.startswith("backbone.") for k in trained.state_dict())
    n_values = sum(v.numel() for v in trained.state_dict().values())
    assert n_values * 4 <= path.stat().st_size < n_values * 4 + 64_000  # float32 values, a little container overhead
    torch.manual_seed(1)
    restored = SegDINO(out_channels=2, weights=weights, backbone_kwargs=TINY_VIT)
    x = torch.rand(1, 3, 32, 48)
    assert not torch.allclose(trained.eval()(x), restored.eval()(x))
    restored.load_decoder(path)
    assert torch.equal(trained(x), restored(x))
    torch.save({"network": trained.state_dict(), "epoch": 4}, tmp_path / "ckpt.pt")  # MONAI CheckpointSaver's shape
    torch.manual_seed(2)
    again = SegDINO(out_channels=2, weights=weights, backbone_kwargs=TINY_VIT)
    again.load_decoder(tmp_path / "ckpt.pt")
    assert torch.equal(trained(x), again.eval()(x))


def test_decoder_load_errors(tmp_path):
    path = tiny_net(out_channels=2).save_decoder(tmp_path / "model.pt")
    with pytest.raises(InputError, match=r"model.pt does not fit .*trained for 2 output channel.*--num_classes 2"):
        tiny_net(out_channels=1).load_decoder(path)
    with pytest.raises(InputError, match="Decoder checkpoint not found: .*missing.pt"):
        tiny_net().load_decoder(tmp_path / "missing.pt")
    wider = SegDINO(out_channels=2, backbone_kwargs={**TINY_VIT, "embed_dim": 64})
    with pytest.raises(
        InputError, match=r"trained on a ViT with embed_dim 48 features .* this backbone has embed_dim 64"
    ):
        wider.load_decoder(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # the atomic save left no temporary file
