from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from monai.data import DataLoader, load_decathlon_datalist

import segdino_monai
from segdino_monai.data.demo import make_demo_dataset
from segdino_monai.networks import SegDINO
from segdino_monai.workflows import CachedFeatureNetwork, FeatureCacheDataset, feature_cache
from segdino_monai.workflows.configs import get_transforms
from segdino_monai.workflows.feature_cache import preprocessing_code_digest
from tests.conftest import TINY_VIT


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = make_demo_dataset(tmp_path_factory.mktemp("demo"), "endoscopy", num_images=10, size=(64, 64), seed=0)
    return load_decathlon_datalist(path, data_list_key="training")


def cache(data, net, folder, **kwargs):
    train, evaluate = get_transforms("endoscopy", spatial_size=(64, 64))
    options = {"dtype": "float32", "progress": False, **kwargs}
    return FeatureCacheDataset(data, net, evaluate, train, folder, **options)


def test_training_from_the_cache_gives_the_losses_of_live_training(demo, tmp_path):
    torch.manual_seed(0)
    live_net = SegDINO(backbone_kwargs=TINY_VIT)
    cached_net = SegDINO(backbone_kwargs=TINY_VIT)
    cached_net.load_state_dict(live_net.state_dict())
    _, evaluate = get_transforms("endoscopy", spatial_size=(64, 64))
    live = DataLoader([evaluate(dict(item)) for item in demo], batch_size=2, shuffle=False)
    cached = DataLoader(cache(demo, cached_net, tmp_path), batch_size=2, shuffle=False)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = {}
    for name, net, loader in (("live", live_net, live), ("cached", CachedFeatureNetwork(cached_net), cached)):
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
        net.train()
        losses[name] = []
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_fn(net(batch["image"]), batch["label"].float())
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    assert len(losses["live"]) >= 3
    assert losses["cached"] == pytest.approx(losses["live"], rel=1e-4, abs=1e-5)


def test_views_and_storage(demo, tmp_path):
    net = SegDINO(backbone_kwargs=TINY_VIT)
    dataset = cache(demo, net, tmp_path, num_views=3, dtype="float16")
    item = dataset[0]
    assert item["image"].shape == (4, 48, 4, 4) and item["label"].shape == (1, 64, 64)
    stored = torch.load(dataset.files[0][1], weights_only=True)
    assert stored["features"].dtype == torch.float16
    view0, view1 = (torch.load(dataset.files[0][v], weights_only=True)["features"] for v in (0, 1))
    assert not torch.equal(view0, view1)  # an augmented view differs from the deterministic one
    again = cache(demo, net, tmp_path, num_views=3, dtype="float16")
    assert torch.equal(torch.load(again.files[0][1], weights_only=True)["features"], view1)  # seeded: reproducible


def test_a_fixed_view_and_the_counts_of_computed_and_reused_views(demo, tmp_path):
    """Validation reads view 0 (the deterministic one) of the training cache; a second opening computes nothing."""
    net = SegDINO(backbone_kwargs=TINY_VIT)
    first = cache(demo[:4], net, tmp_path, num_views=3)
    assert (first.computed, first.reused) == (12, 0)
    validation = cache(demo, net, tmp_path, num_views=3, view=0)
    assert len(demo) > 4
    assert (validation.computed, validation.reused) == (3 * (len(demo) - 4), 12)  # new images: every view; 4 reused
    assert validation.folder == first.folder
    _, evaluate = get_transforms("endoscopy", spatial_size=(64, 64))
    for index in range(len(demo)):
        for _ in range(3):  # never a random view
            features = validation[index]["image"]
            assert torch.equal(features, torch.load(validation.files[index][0], weights_only=True)["features"])
    with torch.no_grad():
        direct = torch.stack(net.backbone(evaluate(dict(demo[-1]))["image"][None]), dim=1)[0]
    torch.testing.assert_close(validation[len(demo) - 1]["image"], direct)
    with pytest.raises(ValueError, match="view must be in 0..2"):
        cache(demo, net, tmp_path, num_views=3, view=3)


def test_a_second_dataset_on_the_same_pipelines_finds_the_views_the_first_built(demo, tmp_path):
    """Training builds its views, then validation opens the cache with the same transforms: same key, nothing built."""
    net = SegDINO(backbone_kwargs=TINY_VIT)
    train, evaluate = get_transforms("endoscopy", spatial_size=(64, 64))
    options = {"num_views": 3, "dtype": "float32", "progress": False}
    training = FeatureCacheDataset(demo, net, evaluate, train, tmp_path, **options)
    assert training.computed == 3 * len(demo)
    validation = FeatureCacheDataset(demo[-1:], net, evaluate, train, tmp_path, view=0, **options)
    assert validation.key == training.key
    assert (validation.computed, validation.reused) == (0, 3)


def test_key_changes_with_weights_taps_size_and_preprocessing(demo, tmp_path):
    net = SegDINO(backbone_kwargs=TINY_VIT)
    base = cache(demo[:1], net, tmp_path).key
    other_weights = SegDINO(backbone_kwargs=TINY_VIT)
    with torch.no_grad():
        other_weights.backbone.model.norm.weight.add_(0.1)
    other_taps = SegDINO(taps=(0, 1, 2, 3), proj_channels=(8, 8, 8, 8), backbone_kwargs={**TINY_VIT, "depth": 5})
    train, evaluate = get_transforms("endoscopy", spatial_size=(48, 48))
    resized = FeatureCacheDataset(demo[:1], net, evaluate, train, tmp_path, progress=False).key
    _, no_crop = get_transforms(
        "endoscopy",
        spatial_size=(64, 64),
        overrides={"cleanup#1#_disabled_": True},  # no border crop
    )
    changed = FeatureCacheDataset(demo[:1], net, no_crop, None, tmp_path, progress=False).key
    keys = {base, cache(demo[:1], other_weights, tmp_path).key, cache(demo[:1], other_taps, tmp_path).key}
    keys |= {resized, changed, cache(demo[:1], net, tmp_path, description={"modality": "x"}).key}
    assert len(keys) == 6
    assert cache(demo[:1], net, tmp_path).key == base


def test_key_changes_with_the_preprocessing_code(demo, tmp_path, monkeypatch):
    package = Path(segdino_monai.__file__).parent
    copy = tmp_path / "segdino_monai"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    real = preprocessing_code_digest()
    assert preprocessing_code_digest(copy) == real

    def edited(relative: str) -> str:
        """The copy's digest with ``relative`` edited (a comment appended), then the edit undone."""
        path = copy / relative
        text = path.read_text()
        path.write_text(text + "# edited\n")
        try:
            return preprocessing_code_digest(copy)
        finally:
            path.write_text(text)

    # above transforms: the report, the handlers, the inferer do not make features
    for relative in ("reporting/page.py", "handlers/metrics_json.py", "inferers/tta.py", "workflows/configs.py"):
        assert (copy / relative).is_file(), relative
        assert edited(relative) == real, relative
    # every layer up to transforms, subpackages included: the DICOM decoding, the ultrasound regions, the backbone
    digests = {real}
    for relative in (
        "io/dicom_reader.py",
        "io/ultrasound_regions.py",
        "networks/nets/dinov3_backbone.py",
        "networks/weights/hashes.py",
        "utils/atomic.py",
        "dicom/__init__.py",
        "data/datalist.py",
        "metrics/uncertainty.py",
        "transforms/endoscopy.py",
    ):
        assert (copy / relative).is_file(), relative
        digest = edited(relative)
        assert digest != real and digest not in digests, relative
        digests.add(digest)
    assert len(digests) == 10  # each edit gave its own digest
    (copy / "io" / "new_reader.py").write_text("")  # a new module counts too
    assert preprocessing_code_digest(copy) != real
    (copy / "io" / "new_reader.py").unlink()
    endoscopy = copy / "transforms" / "endoscopy.py"
    endoscopy.write_text(endoscopy.read_text().replace("0.", "0.0", 1))  # a constant of the clean-up changed
    changed = preprocessing_code_digest(copy)
    assert changed != real

    net = SegDINO(backbone_kwargs=TINY_VIT)
    base = cache(demo[:1], net, tmp_path / "cache")
    monkeypatch.setattr(feature_cache, "preprocessing_code_digest", lambda: changed)
    after = cache(demo[:1], net, tmp_path / "cache")
    assert after.key != base.key and after.folder != base.folder  # the old features are not served


def test_corrupted_stale_and_missing_files_are_rebuilt(demo, tmp_path, caplog):
    net = SegDINO(backbone_kwargs=TINY_VIT)
    first = cache(demo, net, tmp_path)
    reference = torch.load(first.files[1][0], weights_only=True)["features"]
    first.files[1][0].write_bytes(first.files[1][0].read_bytes()[:100])  # truncated
    first.files[2][0].write_bytes(first.files[3][0].read_bytes())  # another image's features: stale
    first.files[4][0].unlink()  # an interrupted build
    calls = []
    net.backbone.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    with caplog.at_level(logging.WARNING):
        second = cache(demo, net, tmp_path)
    assert "unreadable" in caplog.text and "stale" in caplog.text
    assert sum(calls) == 3  # exactly the three bad views were recomputed
    assert torch.equal(torch.load(second.files[1][0], weights_only=True)["features"], reference)
    assert sorted(p.name for p in second.folder.iterdir() if p.suffix == ".tmp") == []


KILLED_BUILD = """
import os, signal, sys
import torch
from monai.data import load_decathlon_datalist
from segdino_monai.workflows import FeatureCacheDataset
from segdino_monai.networks import SegDINO
from segdino_monai.workflows.configs import get_transforms

datalist, folder, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_save, calls = torch.save, []


def dying_save(obj, f, *args, **kwargs):
    calls.append(f)
    real_save(obj, f, *args, **kwargs)
    if len(calls) == kill_at:  # half of this file is on disk, not yet moved into place: die now
        os.truncate(f, os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)


torch.save = dying_save
torch.manual_seed(0)
net = SegDINO(backbone_kwargs={"embed_dim": 48, "depth": 4, "num_heads": 2})
train, evaluate = get_transforms("endoscopy", spatial_size=(64, 64))
data = load_decathlon_datalist(datalist, data_list_key="training")
FeatureCacheDataset(data, net, evaluate, train, folder, num_views=2, dtype="float32", progress=False)
"""


def test_a_killed_build_leaves_no_leftovers_and_the_rerun_completes_it(tmp_path):
    """SIGKILL while writing the 6th of 8 views: 5 files are reused, the temporary file goes, 3 are computed."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    datalist = make_demo_dataset(tmp_path / "demo", "endoscopy", num_images=6, size=(64, 64), seed=0)
    data = load_decathlon_datalist(datalist, data_list_key="training")
    assert len(data) == 4  # 8 views with 2 per image
    folder = tmp_path / "cache"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-c", KILLED_BUILD, str(datalist), str(folder), "6"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    (cache_folder,) = folder.iterdir()
    complete = {p: p.stat().st_mtime_ns for p in cache_folder.glob("[!.]*.pt")}  # pathlib's * matches dot files
    leftovers = [p.name for p in cache_folder.iterdir() if p.name.startswith(".")]
    assert len(complete) == 5 and len(leftovers) == 1 and leftovers[0].endswith(".tmp.pt")

    torch.manual_seed(0)
    net = SegDINO(backbone_kwargs=TINY_VIT)  # the same weights as the killed process's: the same cache key
    calls = []
    net.backbone.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    again = cache(data, net, folder, num_views=2)
    assert again.folder == cache_folder
    assert sum(calls) == 3  # only the views the killed run had not finished
    assert [p.name for p in cache_folder.iterdir() if p.name.startswith(".")] == []
    assert all(p.stat().st_mtime_ns == t for p, t in complete.items())  # the finished views were kept as they were
    assert len(list(cache_folder.glob("[!.]*.pt"))) == 8
    assert all(again._valid(i, v) for i in range(4) for v in range(2))
