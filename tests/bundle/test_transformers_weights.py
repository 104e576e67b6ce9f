"""The bundle trains, evaluates and infers with Hugging Face transformers DINOv3 weights (a snapshot folder)."""

from __future__ import annotations

import json

import torch

from tests.bundle.conftest import EVALUATE, TRAIN, tiny_overrides, workflow
from tests.conftest import TINY_VIT
from tests.networks.dinov3_transformers_files import hf_features, hf_model, relative_errors, require_transformers


def test_train_and_evaluate_on_a_transformers_snapshot(tmp_path):
    transformers = require_transformers()
    # TINY_VIT's shape as a transformers model: timm's MLP is 4x wide.
    width, heads = TINY_VIT["embed_dim"], TINY_VIT["num_heads"]
    shape = {"hidden_size": width, "num_attention_heads": heads, "intermediate_size": 4 * width}
    hf = hf_model(transformers, "vits16", TINY_VIT["depth"], **shape)
    snapshot = tmp_path / "dinov3-tiny-snapshot"
    hf.save_pretrained(snapshot)
    overrides = tiny_overrides(tmp_path, backbone_weights=str(snapshot))
    flow = workflow(TRAIN, "train", **overrides, **{"train#trainer#max_epochs": 1})
    flow.run()
    flow.finalize()
    backbone = flow.parser.get_parsed_content("network").backbone
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert max(relative_errors(backbone(x.to(next(backbone.parameters()).device)), hf_features(hf, x))) < 1e-5
    evaluation = workflow(EVALUATE, "train", **overrides)
    evaluation.run()
    evaluation.finalize()
    summary = json.loads((tmp_path / "eval" / "metrics_summary.json").read_text())
    assert summary["num_images"] > 0
