"""Dataset folder layouts: each reader turns a public dataset's folder into image/mask pairs.

Registered layouts (see ``LAYOUTS``; pairing rule in :mod:`segdino_monai.data.pairing`):

- ``kvasir``: Kvasir-SEG, ``images/`` + ``masks/`` with the same file names.
- ``cvc``: CVC-ClinicDB ``Original/`` + ``Ground Truth/`` (TIFF, or the ``PNG/`` and ``TIF/`` variants), or
  ``images/`` + ``masks/`` (CVC-EndoSceneStill exports), same file names.
- ``isic``: ISIC 2016/2017/2018 official folders (``ISIC-2017_Training_Data`` + ``..._Training_Part1_GroundTruth``,
  ``..._Validation_...``, ``..._Test_v2_...``; ``ISIC2018_Task1-2_Training_Input`` + ``ISIC2018_Task1_Training_
  GroundTruth``, ...), whose splits are kept, or a flat ``images/`` + ``masks/``; masks ``<id>_segmentation.png`` or
  ``<id>.png``; ``_superpixels`` files are skipped.
- ``tn3k``: TN3K ``trainval-image/`` ``trainval-mask/`` ``test-image/`` ``test-mask/``: the official test split is
  kept, validation is carved from trainval.
- ``busi``: BUSI ``benign|malignant|normal/<name> (N).png`` with ``<name> (N)_mask.png``, ``_mask_1.png``, ...: all
  of an image's masks are listed; the class folder is kept as the pair's group. Also ``images/`` + ``masks/``
  with the same names (the RGB class-colour mask variant).
- ``ddti``: DDTI as re-processed for TN-SCUI: ``images/`` + ``masks/`` (or ``image/`` + ``mask/``), same names.
- ``generic``: an images folder + a masks folder, masks named like the image or with a suffix among ``_mask``,
  ``_segmentation``, ``_seg``, ``_label``, ``_gt`` (configurable).

Every layout also accepts official split folders (``train/``, ``val/``, ``test/`` or ``TrainDataset/``, ...) that
each hold its image and mask folders, and a dataset that sits in a single sub-folder of the given one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segdino_monai.data.pairing import (
    DEFAULT_MASK_SUFFIXES,
    SPLITS,
    Pair,
    Problem,
    list_images,
    pair_files,
    split_masks_from_images,
)
from segdino_monai.utils.errors import InputError

__all__ = ["LAYOUTS", "LayoutScan", "detect_layout", "register_layout", "scan_layout"]

_SPLIT_ALIASES = {
    "training": ("train", "training", "traindataset", "trainset", "trainingdata"),
    "validation": ("val", "valid", "validation", "validationdataset", "valdataset", "valset"),
    "test": ("test", "testing", "testdataset", "testset"),
}
_IMAGE_DIRS = ("images", "image", "imgs", "img")
_MASK_DIRS = ("masks", "mask", "labels", "label", "groundtruth", "gt", "annotations")


@dataclass
class LayoutScan:
    """What a layout reader found in a dataset folder.

    Attributes:
        root: the dataset folder.
        layout: the layout's registered name.
        pairs: the image/mask pairs.
        problems: unpaired images or masks and ambiguous names.
    """

    root: Path
    layout: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


LayoutReader = Callable[[Path, Sequence[str] | None], LayoutScan]
LAYOUTS: dict[str, LayoutReader] = {}
_DETECTORS: dict[str, Callable[[Path], bool]] = {}


def register_layout(name: str, detect: Callable[[Path], bool] | None = None) -> Callable[[LayoutReader], LayoutReader]:
    """Register a reader ``(root, mask_suffixes) -> LayoutScan`` under ``name``, optionally with a detector."""

    def decorator(reader: LayoutReader) -> LayoutReader:
        LAYOUTS[name] = reader
        if detect is not None:
            _DETECTORS[name] = detect
        return reader

    return decorator


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _child(root: Path, names: Sequence[str]) -> Path | None:
    """The first sub-folder of ``root`` whose normalised name is in ``names`` (in the order of ``names``)."""
    children = {_norm(p.name): p for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}
    return next((children[_norm(n)] for n in names if _norm(n) in children), None)


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_pair_dirs(
    root: Path,
    layout: str,
    image_dirs: Sequence[str],
    mask_dirs: Sequence[str],
    suffixes: Sequence[str],
    nested: Sequence[str] = (),
) -> LayoutScan:
    """Pairs from an image folder + a mask folder, in official split folders when present.

    Looks in ``root``, then in the sub-folders named in ``nested``, then in ``root``'s only sub-folder.
    """
    candidates = [root, *[c for n in nested if (c := _child(root, [n])) is not None]]
    subdirs = _subdirs(root)
    if len(subdirs) == 1:
        candidates.append(subdirs[0])
    for base in candidates:
        split_dirs = [(split, d) for split, names in _SPLIT_ALIASES.items() if (d := _child(base, names)) is not None]
        for folders in ([split_dirs] if split_dirs else []) + [[(None, base)]]:
            found = [(split, _child(d, image_dirs), _child(d, mask_dirs)) for split, d in folders]
            if any(images is None or masks is None for _, images, masks in found):
                continue
            scan = LayoutScan(root=root, layout=layout)
            for split, images, masks in found:
                pairs, problems = pair_files(list_images(images), list_images(masks), suffixes, split=split)
                scan.pairs += pairs
                scan.problems += problems
            return scan
    raise FileNotFoundError(
        f"{root} does not look like a {layout!r} dataset: expected an image folder ({', '.join(image_dirs)}) and a "
        f"mask folder ({', '.join(mask_dirs)}), directly or in train/val/test folders; pass the dataset's folder"
    )


def _has_pair_dirs(root: Path) -> bool:
    return _child(root, _IMAGE_DIRS) is not None and _child(root, _MASK_DIRS) is not None


@register_layout("kvasir")
def scan_kvasir(root: Path, mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """Kvasir-SEG: ``images/`` + ``masks/`` with the same file names (``kavsir_bboxes.json`` is ignored)."""
    return _scan_pair_dirs(root, "kvasir", ("images",), ("masks",), mask_suffixes or ("",), nested=("Kvasir-SEG",))


_CVC_IMAGES = ("Original", "images", "image")
_CVC_MASKS = ("Ground Truth", "GroundTruth", "masks", "mask", "gt")


@register_layout("cvc", detect=lambda root: _child(root, ("Original",)) is not None)
def scan_cvc(root: Path, mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """CVC-ClinicDB / CVC-EndoSceneStill: ``Original/`` + ``Ground Truth/`` or ``images/`` + ``masks/``, same names."""
    nested = ("PNG", "TIF", "CVC-ClinicDB", "CVC-EndoSceneStill")
    return _scan_pair_dirs(root, "cvc", _CVC_IMAGES, _CVC_MASKS, mask_suffixes or ("",), nested=nested)


@register_layout("ddti")
def scan_ddti(root: Path, mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """DDTI (TN-SCUI re-processing): ``images/`` + ``masks/`` (or ``image/`` + ``mask/``), same names, ``.PNG``."""
    return _scan_pair_dirs(root, "ddti", ("images", "image"), ("masks", "mask"), mask_suffixes or ("",))


@register_layout("generic", detect=_has_pair_dirs)
def scan_generic(root: Path, mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """An images folder + a masks folder; masks named like the image, or with one of ``mask_suffixes``."""
    suffixes = ("", *DEFAULT_MASK_SUFFIXES) if mask_suffixes is None else tuple(mask_suffixes)
    return _scan_pair_dirs(root, "generic", _IMAGE_DIRS, _MASK_DIRS, suffixes)


_ISIC_DATA = re.compile(r"(?i)^is[ib].*?_(training|validation|test)(?:_v\d+)?_(data|input)$")
_ISIC_TRUTH = re.compile(r"(?i)^is[ib].*?_(training|validation|test)(?:_v\d+)?_(?:part1_)?groundtruth$")


def _isic_official(root: Path) -> dict[str, tuple[Path, Path]]:
    data, truth = {}, {}
    for folder in _subdirs(root) if root.is_dir() else []:
        if match := _ISIC_DATA.match(folder.name):
            data[match.group(1).lower()] = folder
        elif match := _ISIC_TRUTH.match(folder.name):
            truth[match.group(1).lower()] = folder
    return {split: (data[split], truth[split]) for split in data if split in truth}


@register_layout("isic", detect=lambda root: bool(_isic_official(root)))
def scan_isic(root: Path, mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """ISIC 2016-2018: official split folders when present (their splits are kept), else ``images/`` + ``masks/``."""
    suffixes = mask_suffixes or ("_segmentation", "")
    official = _isic_official(root)
    if not official:
        return _scan_pair_dirs(root, "isic", _IMAGE_DIRS, _MASK_DIRS, suffixes)
    scan = LayoutScan(root=root, layout="isic")
    for split in ("training", "validation", "test"):
        if split in official:
            data, truth = official[split]
            images = list_images(data, ignore_suffixes=("_superpixels",))
            pairs, problems = pair_files(images, list_images(truth), suffixes, split=split)
            scan.pairs += pairs
            scan.problems += problems
    return scan


@register_layout("tn3k", detect=lambda root: _child(root, ("trainval-image",)) is not None)
def scan_tn3k(root: Path, mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """TN3K: ``trainval-image/`` + ``trainval-mask/`` (training) and ``test-image/`` + ``test-mask/`` (test)."""
    base = root if _child(root, ("trainval-image",)) else _child(root, ("tn3k", "TN3K"))
    scan = LayoutScan(root=root, layout="tn3k")
    for prefix, split in (("trainval", "training"), ("test", "test")):
        images = _child(base, (f"{prefix}-image",)) if base else None
        masks = _child(base, (f"{prefix}-mask",)) if base else None
        if images is None or masks is None:
            raise FileNotFoundError(f"{root} is not a TN3K folder: {prefix}-image/ and {prefix}-mask/ are missing")
        pairs, problems = pair_files(list_images(images), list_images(masks), mask_suffixes or ("",), split=split)
        scan.pairs += pairs
        scan.problems += problems
    return scan


_BUSI_CLASSES = ("benign", "malignant", "normal")


def _busi_base(root: Path) -> Path | None:
    for base in (root, _child(root, ("Dataset_BUSI_with_GT", "BUSI"))):
        if base is not None and _child(base, ("benign",)) and _child(base, ("malignant",)):
            return base
    return None


@register_layout("busi", detect=lambda root: _busi_base(root) is not None)
def scan_busi(root: Path, mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """BUSI: class folders holding ``<name> (N).png`` and its masks ``<name> (N)_mask.png``, ``_mask_1.png``, ...

    Falls back to ``images/`` + ``masks/`` with the same names (the RGB class-colour variant).
    """
    base = _busi_base(root)
    if base is None:
        return _scan_pair_dirs(root, "busi", _IMAGE_DIRS, _MASK_DIRS, mask_suffixes or ("",))
    suffixes = mask_suffixes or ("_mask",)
    scan = LayoutScan(root=root, layout="busi")
    for name in _BUSI_CLASSES:
        folder = _child(base, (name,))
        if folder is None:
            continue
        images, masks = split_masks_from_images(list_images(folder), suffixes)
        pairs, problems = pair_files(images, masks, suffixes, group=name)
        scan.pairs += pairs
        scan.problems += problems
    return scan


def detect_layout(root: str | Path) -> str:
    """The name of the layout of ``root``: a dataset-specific one when recognisable, else ``generic``.

    Raises:
        FileNotFoundError: when ``root`` is not a folder or no layout matches.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    for name in ("isic", "tn3k", "busi", "cvc", "generic"):
        if _DETECTORS[name](root):
            return name
    raise FileNotFoundError(f"cannot detect the layout of {root}: pass --layout ({', '.join(sorted(LAYOUTS))})")


def scan_layout(root: str | Path, layout: str = "auto", mask_suffixes: Sequence[str] | None = None) -> LayoutScan:
    """Read a dataset folder with a registered layout (``auto``: detect it).

    Args:
        root: the dataset folder.
        layout: a name in ``LAYOUTS`` or ``auto``.
        mask_suffixes: override the layout's accepted mask suffixes (include ``""`` for same-name masks).

    Returns:
        The pairs and pairing problems found; pairs sorted by official split, then image path.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    name = detect_layout(root) if layout == "auto" else layout
    if name not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}: choose one of {', '.join(sorted(LAYOUTS))} or auto")
    scan = LAYOUTS[name](root, mask_suffixes)
    rank = {split: i for i, split in enumerate(SPLITS)}
    scan.pairs.sort(key=lambda p: (rank.get(p.split, -1), p.image))
    return scan
