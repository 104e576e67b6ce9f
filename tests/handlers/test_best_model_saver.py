"""BestModelSaver: model.pt holds the best state so far, unwrapped, and an interrupted write leaves the last one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from segdino_monai.handlers import BestModelSaver


def test_best_model_saver_keeps_the_best_state_and_survives_an_interrupted_write(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 1)
    scores = iter([0.5, 0.4, 0.7, 0.9])
    written = {}

    def validate(engine, batch):
        with torch.no_grad():
            model.weight.add_(1.0)  # a new state each validation

    evaluator = Engine(validate)

    @evaluator.on(Events.EPOCH_COMPLETED)
    def score(engine):
        engine.state.key_metric_name = "dice"
        engine.state.metrics["dice"] = next(scores)
        written[engine.state.metrics["dice"]] = model.weight.clone()

    BestModelSaver(tmp_path, torch.nn.DataParallel(model)).attach(evaluator)  # saved unwrapped
    path = tmp_path / "model.pt"
    evaluator.run([0])
    assert torch.equal(torch.load(path, weights_only=True)["weight"], written[0.5])
    evaluator.run([0])  # 0.4: worse, model.pt unchanged
    assert torch.equal(torch.load(path, weights_only=True)["weight"], written[0.5])
    evaluator.run([0])
    assert torch.equal(torch.load(path, weights_only=True)["weight"], written[0.7])

    def interrupted_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        evaluator.run([0])  # 0.9 would be saved: Ctrl-C while writing
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["weight"], written[0.7])  # the last complete model.pt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
