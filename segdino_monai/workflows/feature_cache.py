"""Training the decoder from cached backbone features.

The backbone is frozen, so the features of a fixed view of an image never change: they are computed once per view,
stored on disk (half precision by default, one ``torch.save`` file per view, memory-mapped when read), and training
then runs the aligner and decoder only. Augmentation happens before the backbone: view 0 of every image is the
deterministic evaluation view and views ``1..num_views-1`` are seeded draws of the training augmentation; each epoch
samples one view per image. No geometric augmentation is exact in feature space (DINOv3's RoPE attention is not
flip- or rotation-equivariant), so none is applied there.

The cache folder is keyed by a hash of the backbone weights, the model size and taps, the preprocessing
(its description and the transforms' settings), the code of every layer up to ``transforms``
(:func:`preprocessing_code_digest`), the number of views, the seed and the storage dtype; every file
also records its own key and is checked when the dataset opens, so a stale or corrupted file is rebuilt, never used.
Files are written atomically, so an interrupted build (Ctrl-C, a killed process) resumes where it stopped: the views
written before are reused, the temporary files the killed writer left are removed, the rest is computed.

Validation can read the cache too (``view=0``: always the deterministic view), so a retraining that only adds labels
(the MONAI Label app) runs no backbone at all for the images cached before. ``computed`` and ``reused`` count the
views a dataset computed and found on disk.

Under ``torch.distributed`` (``multi_gpu_train.json``) every process opens the same cache: process 0 alone removes
leftovers and writes ``config.json``, then the views to compute are dealt out (process ``r`` computes every
``world_size``-th, from its rank), and every process waits for all (a barrier) before it reads any file, so no view is
computed twice and no file is read half-written. Otherwise one process builds a cache folder at a time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import monai
import torch
from monai.data import CacheDataset, MetaTensor
from monai.transforms import Compose, Randomizable, Transform
from torch import nn
from torch.utils.data import Dataset

import segdino_monai
from segdino_monai.utils.atomic import atomic_write, remove_leftovers, write_json
from segdino_monai.utils.distributed import rank_and_world
from segdino_monai.utils.errors import InputError
from segdino_monai.utils.options import as_bool

__all__ = ["CachedFeatureNetwork", "FeatureCacheDataset", "training_dataset"]

logger = logging.getLogger(__name__)


class CachedFeatureNetwork(nn.Module):
    """Runs a SegDINO's aligner and decoder on cached features ``(B, taps, C, h, w)``; shares its parameters."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        if not hasattr(network, "decode"):
            raise InputError(
                f"feature_cache needs a SegDINO (it calls its decode), got {type(network).__name__}; under DDP pass "
                "the wrapper to workflows.training_network, which wraps the cached network itself"
            )
        self.network = network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return logits at ``patch_size`` times the feature grid."""
        h, w = features.shape[-2:]
        patch = self.network.patch_size
        return self.network.decode(list(features.float().unbind(1)), (h * patch, w * patch))


class FeatureCacheDataset(Dataset):
    """Cached backbone features and masks of every view of every image (see the module docstring).

    Items are ``{"image": features (taps, C, h, w) float32, "label": (1, H, W) float32}``: a batch of them is what
    :class:`CachedFeatureNetwork` takes. Entries without a ``label`` (unlabelled images) give features only.

    Args:
        data: datalist entries ``{"image": ..., "label": ...}``.
        network: the SegDINO whose frozen backbone makes the features.
        eval_transform: the deterministic pipeline (view 0): image ``(3, H, W)`` and label at model size.
        train_transform: the augmenting pipeline for views ``1..num_views-1`` (seeded per image and view).
        cache_dir: where the cache folders live.
        num_views: views per image (1: the deterministic view only).
        description: settings that define the preprocessing (modality, spatial size, options), part of the key.
        dtype: storage dtype of the features (``"float16"`` or ``"float32"``).
        batch_size: images per backbone batch while building.
        seed: base seed of the augmented views.
        progress: show a progress bar while building.
        view: always give this view (``0``: the deterministic view, for validation); default: a random view
            per item and epoch. Every view is still built, so the files are the ones training uses.

    Attributes:
        computed: views this process computed (the backbone ran).
        reused: views found valid on disk.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        network: nn.Module,
        eval_transform: Transform,
        train_transform: Transform | None = None,
        cache_dir: str | Path = "feature_cache",
        num_views: int = 1,
        description: Mapping[str, Any] | None = None,
        dtype: str = "float16",
        batch_size: int = 8,
        seed: int = 0,
        progress: bool = True,
        view: int | None = None,
    ) -> None:
        if num_views < 1 or (num_views > 1 and train_transform is None):
            raise ValueError(f"num_views must be >= 1 (and > 1 needs train_transform), got {num_views}")
        if view is not None and not 0 <= view < num_views:
            raise ValueError(f"view must be in 0..{num_views - 1} (num_views={num_views}), got {view}")
        self.view = view
        self.data = list(data)
        self.num_views = num_views
        self.dtype = getattr(torch, dtype)
        self.key = self._config_key(network, eval_transform, train_transform, description, num_views, seed, dtype)
        self.folder = Path(cache_dir) / self.key[:16]
        rank, world = rank_and_world()
        if rank == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            config = {"key": self.key, **dict(description or {})}
            write_json(config, self.folder / "config.json", newline=False, default=str)
        _barrier()  # nobody writes before the leftovers of an interrupted build are gone
        self.files = [
            [self.folder / f"{self._entry_key(item, v)[:24]}.pt" for v in range(num_views)] for item in self.data
        ]
        missing = [(i, v) for i in range(len(self.data)) for v in range(num_views) if not self._valid(i, v)]
        _barrier()  # every process has its list of missing views before any process writes one
        share = missing[rank::world]
        self.computed = len(share)
        self.reused = len(self.data) * num_views - len(missing)
        logger.info("Feature cache %s: %d views reused, %d to compute", self.folder, self.reused, self.computed)
        if share:
            self._build(share, network, eval_transform, train_transform, batch_size, seed, progress)
        _barrier()  # every view is on disk before any process reads one

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        view = self.view
        if view is None:
            view = int(torch.randint(self.num_views, (1,))) if self.num_views > 1 else 0
        entry = torch.load(self.files[index][view], map_location="cpu", weights_only=True, mmap=True)
        item = {"image": entry["features"].float()}
        if "label" in entry:
            item["label"] = entry["label"].float()
        return item

    def _remove_leftovers(self) -> None:
        """Remove the temporary files of an interrupted build (``atomic_write``'s ``.<name>.*.tmp.<ext>``)."""
        leftovers = remove_leftovers(self.folder)
        if leftovers:
            logger.warning("Feature cache %s: removed %d temporary files of an interrupted build", self.folder,
                           len(leftovers))  # fmt: skip

    def _entry_key(self, item: Mapping[str, Any], view: int) -> str:
        paths = [str(p) for key in ("image", "label") for p in _as_list(item.get(key))]
        stats = [(os.path.abspath(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths if os.path.exists(p)]
        return _sha256([self.key, paths, stats, view])

    def _valid(self, index: int, view: int) -> bool:
        path = self.files[index][view]
        if not path.is_file():
            return False
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            ok = entry["key"] == self._entry_key(self.data[index], view) and entry["features"].dtype == self.dtype
        except Exception as err:  # a truncated or foreign file: rebuild it
            logger.warning("Feature cache file %s is unreadable (%s): rebuilding it", path, err)
            return False
        if not ok:
            logger.warning("Feature cache file %s is stale: rebuilding it", path)
        return ok

    def _build(
        self,
        todo: list[tuple[int, int]],
        network: nn.Module,
        eval_transform: Transform,
        train_transform: Transform | None,
        batch_size: int,
        seed: int,
        progress: bool,
    ) -> None:
        from tqdm import tqdm

        backbone = network.backbone
        device = next(backbone.parameters()).device
        # the views come from a copy: drawing them sets the random transforms' parameters (e.g. RandAffined's), which
        # are part of the key, so a second dataset on the same pipeline (validation) would get another key and folder
        train_transform = copy.deepcopy(train_transform)
        logger.info("Building the feature cache in %s: %d views to compute", self.folder, len(todo))
        bar = tqdm(total=len(todo), desc="feature cache", unit="view", disable=not progress)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            samples = [self._view(i, v, eval_transform, train_transform, seed) for i, v in chunk]
            images = torch.stack([_plain(s["image"]) for s in samples]).to(device)
            with torch.no_grad():
                features = torch.stack(backbone(images), dim=1).to("cpu", self.dtype)
            for (i, v), sample, feature in zip(chunk, samples, features, strict=True):
                entry = {"features": feature.clone(), "key": self._entry_key(self.data[i], v)}
                if "label" in sample:  # an unlabelled image (active learning) has features only
                    entry["label"] = _plain(sample["label"]).to(torch.uint8).clone()
                atomic_write(self.files[i][v], lambda tmp, entry=entry: torch.save(entry, tmp))
            bar.update(len(chunk))
        bar.close()

    def _view(
        self, index: int, view: int, eval_transform: Transform, train_transform: Transform | None, seed: int
    ) -> dict[str, Any]:
        item = dict(self.data[index])
        if view == 0:
            return eval_transform(item)
        if isinstance(train_transform, Randomizable):
            train_transform.set_random_state(seed=(seed * 1_000_003 + index * 1_009 + view) % 2**32)
        return train_transform(item)

    def _config_key(
        self,
        network: nn.Module,
        eval_transform: Transform,
        train_transform: Transform | None,
        description: Mapping[str, Any] | None,
        num_views: int,
        seed: int,
        dtype: str,
    ) -> str:
        backbone = network.backbone
        weights = hashlib.sha256()
        for name, tensor in sorted(backbone.model.state_dict().items()):
            weights.update(name.encode())
            weights.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return _sha256(
            {
                "package": segdino_monai.__version__,
                "preprocessing_code": preprocessing_code_digest(),
                "monai": monai.__version__,
                "arch": backbone.arch,
                "taps": list(backbone.taps),
                "embed_dim": backbone.embed_dim,
                "weights": weights.hexdigest(),
                "description": dict(description or {}),
                "eval_transform": _describe(eval_transform),
                "train_transform": _describe(train_transform) if num_views > 1 else None,
                "num_views": num_views,
                "seed": seed,
                "dtype": dtype,
            }
        )


def training_network(network: nn.Module, feature_cache: Any = False) -> nn.Module:
    """The network the trainer runs: the SegDINO itself, or its aligner and decoder on cached features.

    Under DDP (``network`` a ``DistributedDataParallel`` of the SegDINO, ``multi_gpu_train.json``) the cached
    network is wrapped in its own ``DistributedDataParallel`` (same devices), so its gradients are averaged across
    processes as the SegDINO's would be; the SegDINO's wrapper still serves validation (forward only, whose gradient
    hooks stay idle without a forward that expects a backward).

    Args:
        network: the SegDINO, or a ``DistributedDataParallel`` of it.
        feature_cache: train from the feature cache (:class:`CachedFeatureNetwork`); an on/off option as typed.
    """
    if not as_bool(feature_cache, "feature_cache"):
        return network
    if isinstance(network, nn.parallel.DistributedDataParallel):
        return nn.parallel.DistributedDataParallel(CachedFeatureNetwork(network.module), device_ids=network.device_ids)
    return CachedFeatureNetwork(network)


def training_dataset(
    data: Sequence[Mapping[str, Any]],
    transform: Transform,
    feature_cache: bool = False,
    network: nn.Module | None = None,
    eval_transform: Transform | None = None,
    cache_dir: str | Path = "feature_cache",
    num_views: int = 1,
    description: Mapping[str, Any] | None = None,
    cache_rate: float = 1.0,
    num_workers: int = 0,
) -> Dataset:
    """The bundle's training dataset: MONAI's ``CacheDataset`` of images, or the backbone-feature cache.

    Args:
        data: datalist entries.
        transform: the training pipeline (images), also the augmentation of cached views 1...
        feature_cache: train the decoder from cached features (needs ``network`` and ``eval_transform``).
        network: the SegDINO whose backbone makes the features.
        eval_transform: the deterministic pipeline (cached view 0).
        cache_dir: folder of the feature caches.
        num_views: cached views per image.
        description: preprocessing settings that are part of the cache key.
        cache_rate: ``CacheDataset``'s share of cached items (image mode).
        num_workers: ``CacheDataset``'s workers while caching (image mode).
    """
    if not feature_cache:
        return CacheDataset(data=data, transform=transform, cache_rate=cache_rate, num_workers=num_workers)
    if network is None or eval_transform is None:
        raise ValueError("feature_cache=True needs the network and the deterministic eval_transform")
    return FeatureCacheDataset(
        data, network, eval_transform, transform, cache_dir, num_views=num_views, description=description
    )


def _plain(value: Any) -> torch.Tensor:
    """A plain tensor (no MONAI meta data, which ``weights_only`` loading rightly refuses)."""
    return value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)


def _as_list(value: Any) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def preprocessing_code_digest(root: str | Path | None = None) -> str:
    """A digest of the code that makes cached features: every module of the layers up to ``transforms``.

    Cached features stay valid only while the code that produced them is the same. The transforms' settings are in
    the key (:func:`_describe`), but a change of their code (a clean-up computed differently, the DICOM decoding, the
    ultrasound regions, the backbone) must invalidate the cache too. The layers are read from
    :data:`segdino_monai.LAYERS` (every one from the bottom up to and including ``transforms``: ``utils``, ``io``,
    ``dicom``, ``data``, ``networks``, ``metrics``, ``transforms`` today), so a new layer below ``transforms`` is
    covered without a list kept here; each is hashed recursively (``networks/weights`` included), file bytes and
    sorted relative paths, which takes a few milliseconds. Layers above (``inferers``, ``workflows``, the report,
    ...) do not change features. Third-party code is covered by the MONAI version in the key.

    Args:
        root: the package folder (default: the installed ``segdino_monai``).
    """
    root = Path(root) if root is not None else Path(segdino_monai.__file__).parent
    layers = segdino_monai.LAYERS[: segdino_monai.LAYERS.index("transforms") + 1]
    digest = hashlib.sha256()
    for path in sorted(path for layer in layers for path in (root / layer).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _describe(transform: Any) -> Any:
    """A stable description of a transform pipeline: classes and their plain settings, recursively."""
    if transform is None:
        return None
    if isinstance(transform, Compose):
        return [_describe(t) for t in transform.transforms]
    settings = {}
    for name, value in sorted(vars(transform).items()):
        if name.startswith("_") or name == "R":
            continue
        if isinstance(value, (str, int, float, bool, type(None))):
            settings[name] = value
        elif isinstance(value, (tuple, list)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            settings[name] = list(value)
        elif isinstance(value, Transform):
            settings[name] = _describe(value)
    return [type(transform).__qualname__, settings]


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
