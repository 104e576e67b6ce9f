from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from segdino_monai.handlers import DecoderLoader
from segdino_monai.networks import SegDINO
from segdino_monai.utils.errors import InputError
from tests.conftest import TINY_VIT


def _net(out_channels: int = 1) -> SegDINO:
    return SegDINO(out_channels=out_channels, backbone_kwargs=TINY_VIT)


def test_decoder_loader_loads_at_start_and_names_a_bad_file(tmp_path):
    trained = _net()
    torch.nn.init.normal_(trained.decoder.layers[0].conv.weight)
    path = trained.save_decoder(tmp_path / "model.pt")
    fresh = _net()
    engine = Engine(lambda e, b: None)
    DecoderLoader(path, fresh).attach(engine)
    assert not torch.equal(fresh.decoder.layers[0].conv.weight, trained.decoder.layers[0].conv.weight)
    engine.run([0], max_epochs=1)
    assert torch.equal(fresh.decoder.layers[0].conv.weight, trained.decoder.layers[0].conv.weight)

    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:1000])
    broken = Engine(lambda e, b: None)
    DecoderLoader(tmp_path / "cut.pt", _net()).attach(broken)
    with pytest.raises(InputError, match=r"Decoder checkpoint .*cut.pt cannot be read as tensors: it is truncated"):
        broken.run([0], max_epochs=1)
