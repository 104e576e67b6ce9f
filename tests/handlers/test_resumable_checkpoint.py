"""ResumableCheckpoint: resume spelled as typed, atomic saves, and a damaged checkpoint named."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from segdino_monai.handlers import ResumableCheckpoint
from segdino_monai.utils.errors import InputError


@pytest.mark.parametrize(("typed", "value"), [("false", False), ("No", False), (0, False), ("TRUE", True), (1, True)])
def test_resume_accepts_typed_spellings(tmp_path, typed, value):
    assert ResumableCheckpoint(tmp_path, {}, resume=typed).resume is value


def test_resume_rejects_anything_else_naming_the_option(tmp_path):
    with pytest.raises(InputError, match="Option resume must be true or false .* got 'maybe'"):
        ResumableCheckpoint(tmp_path, {}, resume="maybe")


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
