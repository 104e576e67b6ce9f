from __future__ import annotations

import pytest
import torch

from segdino_monai.networks import SegDINO
from segdino_monai.networks.blocks import FoldedLinearHead
from tests.conftest import TINY_VIT


def randomised(net: SegDINO) -> SegDINO:
    """Non-trivial head weights and biases, so that the border bias term matters."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in [*net.aligner.parameters(), *net.decoder.parameters()]:
            p.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("out_channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (64, 96), (112, 48)])
def test_folded_head_equals_the_factorised_head(out_channels, size):
    net = randomised(SegDINO(out_channels=out_channels, backbone_kwargs=TINY_VIT)).eval()
    features = net.backbone(torch.rand(2, 3, *size))
    with torch.no_grad():
        expected = net.decoder(net.aligner(features))
        folded = net.folded_head()(features)
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-5)
    # The border differs from the inside: the zero padding of the biased projections is reproduced exactly.
    h, w = features[0].shape[-2:]
    bias = net.folded_head().bias_map(h, w)
    if min(h, w) >= 3:
        assert not torch.allclose(bias[..., 0, 0], bias[..., 1, 1])


def test_eval_uses_the_fold_and_training_the_factorised_parameters():
    net = randomised(SegDINO(backbone_kwargs=TINY_VIT))
    x = torch.rand(1, 3, 48, 48)
    net.eval()
    with torch.no_grad():
        folded_out = net(x)
    assert net._folded is not None
    net.fold_head = False
    with torch.no_grad():
        torch.testing.assert_close(net(x), folded_out, rtol=1e-4, atol=1e-5)
    net.fold_head = True
    net.train()
    out = net(x)
    assert out.grad_fn is not None  # training runs the factorised, trainable head
    out.sum().backward()
    torch.optim.SGD(net.decoder.parameters(), lr=1.0).step()
    net.eval()
    with torch.no_grad():
        after = net(x)
        net.fold_head = False
        unfolded = net(x)
    torch.testing.assert_close(after, unfolded, rtol=1e-4, atol=1e-5)  # the fold was rebuilt after the step
    assert not torch.allclose(after, folded_out)


def test_non_linear_variants_do_not_fold():
    net = SegDINO(hidden_channels=16, act="relu", backbone_kwargs=TINY_VIT).eval()
    assert not net.fold_head
    with pytest.raises(ValueError, match="Only the paper's linear head folds"):
        FoldedLinearHead.from_head(net.aligner, net.decoder)


def test_training_through_the_fold_gives_the_factorised_gradients():
    folded = randomised(SegDINO(out_channels=2, backbone_kwargs=TINY_VIT)).train()
    factorised = SegDINO(out_channels=2, fold_head=False, backbone_kwargs=TINY_VIT).train()
    factorised.load_state_dict(folded.state_dict())
    x, y = torch.rand(2, 3, 48, 64), torch.randint(0, 2, (2, 48, 64))
    for net in (folded, factorised):
        torch.nn.functional.cross_entropy(net(x), y).backward()
    for a, b in zip(folded.parameters(), factorised.parameters(), strict=True):
        if a.requires_grad:
            scale = float(b.grad.abs().max())
            assert scale > 0
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-4 * scale)  # float rounding only
