"""Names of files: compound extensions, and the output name of each input (distinct when stems collide).

``case.nii.gz`` has the stem ``case`` and the suffix ``.nii.gz``: ``pathlib`` sees only the last extension
(``Path("case.nii.gz").stem == "case.nii"``); every place that names an output after its source, or writes through
a temporary file that must keep the format's extension, uses these two. Each input's output name
(:func:`output_names`) is shared by the mask writer, the evaluation report and the datalist readers, so it lives
here, below all of them.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "COMPOUND_SUFFIXES",
    "OUTPUT_NAME_KEY",
    "display_name",
    "file_stem",
    "file_suffix",
    "output_names",
    "path_hash",
    "with_output_names",
]

#: extensions of more than one part that the package reads or writes.
COMPOUND_SUFFIXES = (".nii.gz",)


def file_suffix(path: str | Path) -> str:
    """The extension of ``path``, compound ones whole: ``.nii.gz`` for ``case.nii.gz``, ``.png`` for ``a.b.png``."""
    name = Path(path).name
    return next((s for s in COMPOUND_SUFFIXES if name.endswith(s)), Path(name).suffix)


def file_stem(path: str | Path) -> str:
    """The file name without its extension (:func:`file_suffix`): ``case.nii.gz`` -> ``case``."""
    name = Path(path).name
    suffix = file_suffix(name)
    return name[: -len(suffix)] if suffix else name


#: The datalist key holding each image's output name (see :func:`with_output_names`); it travels with the sample.
OUTPUT_NAME_KEY = "output_name"


def output_names(sources: Iterable[str | Path]) -> dict[str, str]:
    """The output name of each image of a run: distinct for distinct files, and the same on every run.

    The rule, applied to the images that share a file stem (compared ignoring case, as macOS and Windows file systems
    do), taking the first form under which no two images of the run share a name:

    1. the stem: ``a.png`` -> ``a`` (``case.nii.gz`` -> ``case``), the usual case;
    2. the file name: ``a.jpg`` and ``a.png`` -> ``a.jpg`` and ``a.png``;
    3. the path relative to the folder that holds all the images, without extension: ``train/img.png`` and
       ``val/img.png`` -> ``train/img`` and ``val/img`` (their outputs go to sub-folders);
    4. the same with the extension;
    5. with a short hash of the absolute path (names differing only in letter case).

    MONAI's writers name files by the stem and an optional sub-path under a ``data_root_dir``
    (``monai.data.utils.create_file_basename``), which still gives ``a.jpg`` and ``a.png`` one file: hence this rule.

    Args:
        sources: the image paths of the run (repeats are one image).

    Returns:
        The name (``/``-separated, relative) of each source, keyed by ``str(source)``.
    """
    unique = list(dict.fromkeys(str(s) for s in sources))
    absolute = {s: os.path.abspath(s) for s in unique}
    try:
        root: str | None = os.path.commonpath([os.path.dirname(a) for a in absolute.values()]) if unique else None
    except ValueError:  # no common folder (different drives)
        root = None
    groups: dict[str, list[str]] = defaultdict(list)
    for source in unique:
        groups[file_stem(source).lower()].append(source)
    levels = dict.fromkeys(groups, 0)
    while True:
        names = {s: _name_at(s, absolute[s], root, levels[stem]) for stem, members in groups.items() for s in members}
        holders: dict[str, list[str]] = defaultdict(list)
        for source, name in names.items():
            holders[name.lower()].append(source)
        clashing = {file_stem(s).lower() for shared in holders.values() if len(shared) > 1 for s in shared}
        bump = {stem for stem in clashing if levels[stem] < _LAST_LEVEL}
        if not bump:
            return names
        for stem in bump:
            levels[stem] += 1


_LAST_LEVEL = 4


def _name_at(source: str, absolute: str, root: str | None, level: int) -> str:
    """The name of ``source`` under form ``level`` of the rule of :func:`output_names` (0-based)."""
    path = Path(absolute)
    if level == 0:
        return file_stem(source)
    if level == 1:
        return path.name
    if root is None:
        return f"{path.name}-{path_hash(absolute)}"
    folder = Path(os.path.relpath(path.parent, root))
    if level == 2:
        return (folder / file_stem(path)).as_posix()
    if level == 3:
        return (folder / path.name).as_posix()
    return (folder / f"{path.name}-{path_hash(absolute)}").as_posix()


def path_hash(path: str) -> str:
    """Eight hex digits of the absolute path: what tells apart two inputs of the same name."""
    return hashlib.sha1(os.path.abspath(path).encode("utf-8")).hexdigest()[:8]


def with_output_names(
    datalist: Sequence[Mapping[str, object]], image_key: str = "image", name_key: str = OUTPUT_NAME_KEY
) -> list[dict[str, object]]:
    """Copies of the datalist entries with each image's output name (:func:`output_names`) under ``name_key``.

    :class:`SaveSegmentationd` names its files by it; the name travels with the sample through the pipeline.
    """
    names = output_names(str(item[image_key]) for item in datalist)
    return [{**item, name_key: names[str(item[image_key])]} for item in datalist]


def display_name(source: str | Path, name: str) -> str:
    """The output ``name`` of ``source`` with the source's extension when the name lacks it (``train/img.png``)."""
    stem = file_stem(source)
    return name + Path(source).name[len(stem) :] if Path(name).name == stem else name
