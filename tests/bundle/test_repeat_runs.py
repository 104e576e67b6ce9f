"""Training as it is really used: typed options, runs repeated in the same folders, killed runs resumed, bad input.

Several tests run ``python -m monai.bundle run`` as a subprocess on purpose: the command line's own parsing (``fire``
hands ``false`` over as a string) and the one-line error report (an excepthook) exist only there.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import monai.bundle
import pytest
import torch
from ignite.engine import Events

from segdino_monai.networks import SegDINO
from tests.bundle.conftest import (
    BUNDLE,
    EVALUATE,
    INFERENCE,
    TRAIN,
    bundle_run_command,
    command_env,
    run_command,
    tiny_overrides,
    workflow,
)
from tests.conftest import TINY_VIT

TRUE_SPELLINGS = ("true", "True", "1", "yes")
FALSE_SPELLINGS = ("false", "False", "0", "no")
TRAINER_EPOCH_1 = "SupervisedTrainer - INFO - Epoch[1] Complete"


def _last_files(models: Path) -> list[str]:
    return sorted(p.name for p in models.glob("last*.pt"))


def _train(work: Path, datalist: Path, max_epochs: int, resume: object):
    """Train in-process; returns the trainer and the epoch numbers it started (after any resume)."""
    overrides = tiny_overrides(work, datalist=str(datalist), resume=resume, **{"train#trainer#max_epochs": max_epochs})
    flow = workflow(TRAIN, "train", **overrides)
    trainer = flow.parser.get_parsed_content("train#trainer")
    started: list[int] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: started.append(engine.state.epoch))
    flow.run()
    flow.finalize()
    return trainer, started


def test_train_then_train_again_then_resume(tmp_path, tiny_datalist):
    """A fresh run in a folder with a longer earlier run must not crash, and resume continues the newest run."""
    models = tmp_path / "models"
    first, started = _train(tmp_path, tiny_datalist, 3, resume=False)
    per_epoch = first.state.iteration // 3
    assert started == [1, 2, 3] and per_epoch > 0
    assert _last_files(models) == ["last_checkpoint_epoch=3.pt"]

    second_start = time.time_ns()
    _, started = _train(tmp_path, tiny_datalist, 2, resume="false")  # fresh, as typed on a command line
    assert started == [1, 2]
    assert _last_files(models) == ["last_checkpoint_epoch=2.pt"]  # the first run's epoch 3 is gone
    saved = torch.load(models / "last_checkpoint_epoch=2.pt", weights_only=True)["trainer"]
    assert (saved["epoch_length"], saved["iteration"]) == (per_epoch, 2 * per_epoch)  # ignite keeps no epoch count
    assert (models / "model.pt").stat().st_mtime_ns >= second_start  # model.pt of the second run
    SegDINO(backbone_kwargs=TINY_VIT).load_state_dict(torch.load(models / "model.pt", weights_only=True))

    resumed, started = _train(tmp_path, tiny_datalist, 4, resume="yes")
    assert started == [3, 4]  # from the second run's epoch 2, not from the first run's epoch 3
    assert (resumed.state.epoch, resumed.state.iteration) == (4, 4 * per_epoch)
    assert _last_files(models) == ["last_checkpoint_epoch=4.pt"]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_interrupted_training_resumes_to_the_end(tmp_path, tiny_datalist, stop):
    """Kill (or Ctrl-C) a training subprocess after its first checkpoint; ``resume`` then finishes the run."""
    models = tmp_path / "models"
    command = bundle_run_command(tmp_path, f"--datalist={tiny_datalist}", "--train#trainer#max_epochs=200")
    with open(tmp_path / "log.txt", "w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=command_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while not _last_files(models) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert process.poll() is None, (tmp_path / "log.txt").read_text()[-3000:]
            assert _last_files(models), "no checkpoint within the time limit"
            time.sleep(0.5)  # let it go on a little: the kill lands anywhere in the next epoch
        finally:
            process.send_signal(stop)
            process.wait(timeout=120)
    log = (tmp_path / "log.txt").read_text()
    if stop == signal.SIGINT:  # Ctrl-C: "Interrupted." and status 130 (the excepthook), not a crash report
        assert process.returncode == 130 and "Interrupted." in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    else:
        assert process.returncode == -signal.SIGKILL
    from segdino_monai.workflows import latest_checkpoint

    saved = torch.load(latest_checkpoint(models), weights_only=True)["trainer"]
    killed_at = saved["iteration"] // saved["epoch_length"]  # the epoch of the checkpoint
    assert 1 <= killed_at < 200
    trainer, started = _train(tmp_path, tiny_datalist, killed_at + 1, resume="True")
    assert started == [killed_at + 1]
    assert (trainer.state.epoch, trainer.state.iteration) == (killed_at + 1, (killed_at + 1) * saved["epoch_length"])
    assert _last_files(models) == [f"last_checkpoint_epoch={killed_at + 1}.pt"]


def test_make_demo_twice(tmp_path, monkeypatch):
    """The two commands of ``make demo``, twice in the same bundle folder (2 epochs and a tiny backbone)."""
    repo = tmp_path / "repo"
    shutil.copytree(BUNDLE / "configs", repo / "bundle" / "configs")
    monkeypatch.chdir(repo)
    tiny = {"network_def#backbone_kwargs": TINY_VIT, "spatial_size": [64, 64], "num_workers": 0}
    models, evaluation = repo / "bundle" / "models", repo / "bundle" / "eval"
    for attempt in range(2):
        start = time.time_ns()
        monai.bundle.run("training", config_file="bundle/configs/train.json", **tiny, **{"train#trainer#max_epochs": 2})
        monai.bundle.run(
            "evaluating", config_file=["bundle/configs/train.json", "bundle/configs/evaluate.json"], **tiny
        )
        assert _last_files(models) == ["last_checkpoint_epoch=2.pt"], attempt
        assert (models / "model.pt").stat().st_mtime_ns >= start
        summary = json.loads((evaluation / "metrics_summary.json").read_text())
        test_images = json.loads((evaluation / "demo_endoscopy" / "datalist.json").read_text())["test"]
        assert summary["num_images"] == len(test_images) > 0
        assert (evaluation / "metrics_summary.json").stat().st_mtime_ns >= start


@pytest.fixture(scope="module")
def epoch_1_checkpoint(tmp_path_factory, tiny_datalist) -> Path:
    """The training checkpoint of a 1-epoch run on the tiny data."""
    work = tmp_path_factory.mktemp("epoch1")
    _train(work, tiny_datalist, 1, resume=False)
    return work / "models" / "last_checkpoint_epoch=1.pt"


# every spelling of both values for both options, in 8 runs: each run types one option true and the other false
SPELLING_RUNS = [(t, f) for t, f in zip(TRUE_SPELLINGS, FALSE_SPELLINGS, strict=True)]
SPELLING_RUNS += [(f, t) for t, f in zip(TRUE_SPELLINGS[1:] + TRUE_SPELLINGS[:1], FALSE_SPELLINGS, strict=True)]


@pytest.mark.parametrize(("resume", "feature_cache"), SPELLING_RUNS)
def test_boolean_spellings_on_the_bundle_command_line(
    tmp_path, tiny_datalist, epoch_1_checkpoint, resume, feature_cache
):
    """``--resume``/``--feature_cache`` typed as people type them do what they say (``--amp`` too, false)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(epoch_1_checkpoint, models)
    amp = resume if resume in FALSE_SPELLINGS else feature_cache
    args = ["--train#trainer#max_epochs", "2", "--resume", resume, "--feature_cache", feature_cache, "--amp", amp]
    result = run_command(bundle_run_command(tmp_path, f"--datalist={tiny_datalist}", *args), cwd=tmp_path)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    resumed = resume in TRUE_SPELLINGS
    assert ("Resuming training from" in log) is resumed
    assert (TRAINER_EPOCH_1 in log) is not resumed  # a resumed run starts at epoch 2
    assert "Epoch[2] Complete" in log
    cache = tmp_path / "eval" / "feature_cache"
    assert cache.is_dir() is (feature_cache in TRUE_SPELLINGS)
    if cache.is_dir():
        assert len(list(next(cache.iterdir()).glob("*.pt"))) == 4 * 4  # 4 training images, 4 views each
    assert _last_files(models) == ["last_checkpoint_epoch=2.pt"]


def _empty_validation(tmp_path: Path, datalist: Path) -> Path:
    content = json.loads(datalist.read_text())
    base = datalist.parent
    absolute = [{k: str(base / v) for k, v in e.items()} for e in content["training"]]
    path = tmp_path / "no_validation.json"
    path.write_text(json.dumps({"training": absolute, "validation": [], "test": []}))
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--resume", "maybe"], "ERROR Option resume must be true or false"),
        (["--feature_cahce", "true"], "ERROR Unknown config id 'feature_cahce' (in --feature_cahce)"),
        ("EMPTY_VALIDATION", "the 'validation' list is empty"),
    ],
    ids=["resume-maybe", "typo-id", "empty-validation"],
)
def test_bad_input_on_the_bundle_command_line_is_one_line_and_status_2(tmp_path, tiny_datalist, args, expected):
    if args == "EMPTY_VALIDATION":
        path = _empty_validation(tmp_path, tiny_datalist)
        args, expected = [f"--datalist={path}"], f"ERROR Datalist {path}: {expected}"
    else:
        args = [f"--datalist={tiny_datalist}", *args]
    result = run_command(bundle_run_command(tmp_path, *args), cwd=tmp_path)
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and errors[0].startswith(expected), result.stderr[-2000:]
    if "cahce" in expected:
        assert "did you mean 'feature_cache'" in errors[0]
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())  # nothing trained


@pytest.mark.parametrize(("on", "off"), [("yes", "false"), ("1", "no"), ("True", "0")])
def test_inference_and_evaluation_switches_as_typed(tmp_path, tiny_datalist, epoch_1_checkpoint, on, off):
    """save_nifti/save_overlay/largest_component/fill_holes (inference) and save_predictions (evaluation)."""
    work = epoch_1_checkpoint.parent.parent
    images = tmp_path / "images"
    images.mkdir()
    source = Path(json.loads(tiny_datalist.read_text())["test"][0]["image"])
    shutil.copy(tiny_datalist.parent / source, images)
    outputs = {}
    for name, nifti, overlay in (("a", on, off), ("b", off, on)):
        out = tmp_path / name
        switches = {"save_nifti": nifti, "save_overlay": overlay, "largest_component": on, "fill_holes": off}
        overrides = tiny_overrides(work, dataset_dir=str(images), output_dir=str(out), **switches)
        workflow(INFERENCE, "infer", **overrides).run()
        outputs[name] = sorted(p.name for p in out.iterdir())
    stem = source.stem
    assert outputs["a"] == [f"{stem}_mask.nii.gz", f"{stem}_mask.png", "summary.json"]
    assert outputs["b"] == [f"{stem}_mask.png", f"{stem}_overlay.png", "summary.json"]
    for switch, overlays in ((on, True), (off, False)):
        out = tmp_path / f"eval_{switch}"
        overrides = tiny_overrides(work, datalist=str(tiny_datalist), output_dir=str(out), save_predictions=switch)
        workflow(EVALUATE, "train", **overrides).run()
        assert bool(list((out / "predictions").glob("*_overlay.png"))) is overlays
        assert list((out / "predictions").glob("*_mask.png"))  # the masks are always written
