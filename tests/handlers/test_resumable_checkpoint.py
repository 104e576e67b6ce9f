"""The training handlers' own behaviour: resume spelled as typed, and stopping without a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from segdino_monai.engines import QuietStop, ResumableCheckpoint
from segdino_monai.errors import InputError


@pytest.mark.parametrize(("typed", "value"), [("false", False), ("No", False), (0, False), ("TRUE", True), (1, True)])
def test_resume_accepts_typed_spellings(tmp_path, typed, value):
    assert ResumableCheckpoint(tmp_path, {}, resume=typed).resume is value


def test_resume_rejects_anything_else_naming_the_option(tmp_path):
    with pytest.raises(InputError, match="Option resume must be true or false .* got 'maybe'"):
        ResumableCheckpoint(tmp_path, {}, resume="maybe")


def _failing_run(error: BaseException, caplog) -> str:
    engine = Engine(lambda engine, batch: None)

    def fail(_engine):
        raise error

    engine.add_event_handler(Events.ITERATION_COMPLETED, fail)
    QuietStop().attach(engine)
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(type(error)):
        engine.run([0, 1], max_epochs=1)
    return "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records if r.exc_info)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), InputError("Datalist x.json: no")], ids=["ctrl-c", "input"])
def test_quiet_stop_raises_ctrl_c_and_bad_input_without_a_logged_traceback(error, caplog):
    assert _failing_run(error, caplog) == ""


def test_quiet_stop_still_logs_a_bug_with_its_traceback(caplog):
    assert "Exception: a bug" in _failing_run(RuntimeError("a bug"), caplog)


def _engine_with_checkpoint(folder, resume=False) -> tuple[Engine, torch.nn.Module]:
    model = torch.nn.Linear(2, 1)
    engine = Engine(lambda engine, batch: None)
    ResumableCheckpoint(folder, {"model": model}, resume=resume).attach(engine)
    return engine, model


def test_ctrl_c_during_a_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    """The save is atomic: interrupted while writing epoch 2, the folder still holds a loadable epoch 1 only."""
    engine, _ = _engine_with_checkpoint(tmp_path)
    real_save = torch.save

    def interrupted_save(obj, f, *args, **kwargs):
        if engine.state.epoch == 2:
            real_save({"half": torch.zeros(10)}, f)  # some bytes are written, then Ctrl-C
            raise KeyboardInterrupt
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0, 1, 2], max_epochs=3)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint_epoch=1.pt"]
    resumed, _ = _engine_with_checkpoint(tmp_path, resume="yes")
    started = []
    resumed.add_event_handler(Events.EPOCH_STARTED, lambda e: started.append(e.state.epoch))
    resumed.run([0, 1, 2], max_epochs=3)
    assert started == [2, 3] and resumed.state.iteration == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint_epoch=3.pt"]


def test_a_killed_save_is_cleaned_and_a_damaged_checkpoint_is_named(tmp_path):
    engine, _ = _engine_with_checkpoint(tmp_path)
    engine.run([0], max_epochs=1)
    (tmp_path / "tmpab12cd_3").write_bytes(b"x" * 100)  # what Ignite's atomic save leaves when killed
    (tmp_path / "tmp_notes.txt").write_text("a user's file")
    engine, _ = _engine_with_checkpoint(tmp_path, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint_epoch=1.pt", "tmp_notes.txt"]
    damaged = tmp_path / "last_checkpoint_epoch=1.pt"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # e.g. written in place by an older version, then killed
    with pytest.raises(InputError, match=f"the checkpoint {damaged} is damaged"):
        _engine_with_checkpoint(tmp_path, resume=True)


def test_best_model_saver_keeps_the_best_state_and_survives_an_interrupted_write(tmp_path, monkeypatch):
    from segdino_monai.engines import BestModelSaver

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
