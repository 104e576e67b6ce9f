"""Listing image files and pairing images with their masks by file name.

Pairing rule: a mask belongs to the image whose stem (file name without extension) equals the mask's stem, or the
mask's stem with one mask suffix removed (``_mask``, ``_segmentation``, ... compared case-insensitively), optionally
followed by ``_<number>`` for images with several masks (BUSI's ``benign (1)_mask.png``, ``benign (1)_mask_1.png``).
Extensions are free and compared case-insensitively (``.PNG`` and ``.png`` are the same kind of file), so an image
``a.jpg`` pairs with ``a.png``, ``a_mask.png`` or ``a_segmentation.png``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MASK_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "Pair",
    "Problem",
    "list_images",
    "pair_files",
    "split_masks_from_images",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEFAULT_MASK_SUFFIXES: tuple[str, ...] = ("_mask", "_segmentation", "_seg", "_label", "_gt")
SPLITS: tuple[str, ...] = ("training", "validation", "test")


@dataclass(frozen=True)
class Pair:
    """One image and its mask files.

    Attributes:
        image: the image file.
        labels: one or more mask files (several masks of one image are merged by the mask reader).
        split: the dataset's official split (``training``, ``validation`` or ``test``), or None.
        group: a sub-group of the dataset, such as BUSI's class folder, or None.
    """

    image: Path
    labels: tuple[Path, ...]
    split: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Problem:
    """A problem with one file of a dataset folder.

    Attributes:
        kind: a short name: ``unpaired image``, ``unpaired mask``, ``duplicate name``, ``unreadable`` or
            ``size mismatch``.
        path: the file concerned.
        detail: what is wrong and what to do about it.
    """

    kind: str
    path: Path
    detail: str


def list_images(folder: Path, ignore_suffixes: Sequence[str] = ()) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (hidden files and other extensions skipped).

    Args:
        folder: the folder to list.
        ignore_suffixes: stems ending with one of these (case-insensitive) are skipped, e.g. ISIC's ``_superpixels``.
    """
    ignore = tuple(s.lower() for s in ignore_suffixes)
    files = []
    for path in folder.iterdir():
        stem = path.stem.lower()
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if ignore and stem.endswith(ignore):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.name)


def _mask_keys(stem: str, suffixes: Sequence[str]) -> list[tuple[str, int]]:
    """Candidate (image stem, mask index) pairs for a mask stem, the exact stem first."""
    keys = [(stem, 0)] if "" in suffixes else []
    for suffix in sorted((s for s in suffixes if s), key=len, reverse=True):
        match = re.fullmatch(rf"(.+){re.escape(suffix)}(?:_(\d+))?", stem, flags=re.IGNORECASE)
        if match:
            keys.append((match.group(1), int(match.group(2) or 0)))
    return keys


def split_masks_from_images(files: Iterable[Path], suffixes: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """Separate images from masks kept in one folder (BUSI): a mask's stem is another file's stem plus a suffix.

    Args:
        files: the files of the folder.
        suffixes: the mask suffixes; the empty suffix is ignored here.

    Returns:
        The images and the masks, each sorted by name.
    """
    files = sorted(files, key=lambda p: p.name)
    stems = {p.stem for p in files}
    suffixes = [s for s in suffixes if s]
    masks = [p for p in files if any(key in stems and key != p.stem for key, _ in _mask_keys(p.stem, suffixes))]
    mask_set = set(masks)
    return [p for p in files if p not in mask_set], masks


def pair_files(
    images: Sequence[Path],
    masks: Sequence[Path],
    suffixes: Sequence[str],
    split: str | None = None,
    group: str | None = None,
) -> tuple[list[Pair], list[Problem]]:
    """Pair images with masks by the rule of this module.

    Args:
        images: the image files.
        masks: the mask files.
        suffixes: the accepted mask suffixes; include ``""`` to accept masks named exactly like the image.
        split: the official split recorded in every pair, or None.
        group: the group recorded in every pair, or None.

    Returns:
        The pairs sorted by image name, and the problems: images without a mask, masks without an image, and
        images whose stem is not unique (``a.jpg`` beside ``a.png``: both are left out).
    """
    problems: list[Problem] = []
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for image in images:
        by_stem[image.stem].append(image)
    for stem, paths in by_stem.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            for path in paths:
                problems.append(
                    Problem("duplicate name", path, f"several images share the stem {stem!r} ({names}): keep one")
                )
    unique = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}

    found: dict[str, list[tuple[int, str, Path]]] = defaultdict(list)
    for mask in masks:
        key = next(((k, i) for k, i in _mask_keys(mask.stem, suffixes) if k in by_stem), None)
        if key is None:
            problems.append(
                Problem("unpaired mask", mask, f"no image named {mask.stem!r} (mask suffixes {list(suffixes)})")
            )
        elif key[0] in unique:
            found[key[0]].append((key[1], mask.name, mask))

    pairs = []
    for stem, image in sorted(unique.items(), key=lambda item: item[1].name):
        if stem not in found:
            problems.append(Problem("unpaired image", image, f"no mask found for {image.name}"))
            continue
        labels = tuple(path for _, _, path in sorted(found[stem]))
        pairs.append(Pair(image=image, labels=labels, split=split, group=group))
    return pairs, problems
