"""Dataset folder -> MONAI datalist JSON (``training``, ``validation`` and ``test`` lists of image/label entries).

Paths in the JSON are relative to the JSON file's folder, so ``monai.data.load_decathlon_datalist(path,
data_list_key="training")`` resolves them with its default ``base_dir``. A label is one path, or a list of paths
when an image has several masks (BUSI); the mask reader merges them. A ``summary`` key records the layout, seed,
fractions and counts.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segdino_monai.data.layouts import scan_layout
from segdino_monai.data.pairing import SPLITS, Pair
from segdino_monai.data.splits import split_pairs
from segdino_monai.data.validation import DatasetReport, validate_scan
from segdino_monai.utils.atomic import remove_leftovers, write_json
from segdino_monai.utils.errors import InputError

__all__ = ["DatasetError", "build_datalist", "check_output_file", "prepare_datalist", "write_datalist"]

logger = logging.getLogger(__name__)


class DatasetError(InputError):
    """A dataset folder with problems; ``report`` lists them by file."""

    def __init__(self, report: DatasetReport) -> None:
        super().__init__(
            f"{report.summary()}\nFix or remove these files, or pass --skip-bad (skip_bad=True) to leave the bad pairs "
            "out; nothing was written"
        )
        self.report = report


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def build_datalist(splits: Mapping[str, Sequence[Pair]], base_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """MONAI datalist entries ``{"image": path, "label": path or [paths]}`` with paths relative to ``base_dir``."""
    base = Path(base_dir).resolve()
    datalist: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        entries = []
        for pair in splits.get(split, ()):
            labels = [_rel(p, base) for p in pair.labels]
            entries.append({"image": _rel(pair.image, base), "label": labels[0] if len(labels) == 1 else labels})
        datalist[split] = entries
    return datalist


def check_output_file(path: str | Path, option: str = "-o") -> Path:
    """Check that a file can be written at ``path``: not a folder, in a folder that exists (or is made), writable.

    Args:
        path: the file to write.
        option: the command-line option that named it, for the message.

    Raises:
        InputError: naming the path and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder: name the file to write, e.g. {path / 'datalist.json'}.")
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, not a folder. Choose another place for the file.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"{option} {path}: cannot create its folder {parent} ({err.strerror or err}). Choose a writable place."
        ) from err
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: the folder {parent} is not writable. Choose a writable place.")
    return path


def write_datalist(datalist: Mapping[str, Any], path: str | Path) -> Path:
    """Write a datalist as indented JSON atomically (a temporary file in the same folder, then ``os.replace``).

    An existing file is replaced only by the complete new one; a failed or interrupted write leaves it as it was,
    and the temporary file of a killed write is removed by the next one.

    Raises:
        InputError: when the file cannot be written there (a folder, a read-only place), naming it.
    """
    path = check_output_file(path)
    remove_leftovers(path.parent, path.name)  # of a write that was killed before its os.replace
    try:
        return write_json(datalist, path, default=None)
    except OSError as err:
        raise InputError(f"Cannot write the datalist {path} ({err.strerror or err}). Choose a writable place.") from err


def prepare_datalist(
    root: str | Path,
    output: str | Path,
    layout: str = "auto",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    skip_bad: bool = False,
    mask_suffixes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Read, check and split a dataset folder, and write its datalist JSON.

    Args:
        root: the dataset folder.
        output: the JSON file to write.
        layout: a registered layout name (see :mod:`segdino_monai.data.layouts`) or ``auto``.
        seed: the seed of the split.
        val_fraction: share of validation pairs (carved from training where the dataset has an official test split).
        test_fraction: share of test pairs, unused where the dataset has an official test split.
        skip_bad: leave out bad pairs (logged) instead of failing.
        mask_suffixes: override the layout's mask suffixes.

    Returns:
        The datalist written.

    Raises:
        DatasetError: when the folder has problems and ``skip_bad`` is False; nothing is written then.
        InputError: when ``output`` cannot be written (a folder, a read-only place); checked before the scan.
    """
    output = check_output_file(output)  # before the scan: a wrong -o fails at once
    scan = scan_layout(root, layout, mask_suffixes)
    report = validate_scan(scan)
    if not report.ok:
        if not skip_bad:
            raise DatasetError(report)
        logger.warning("skipping bad files (--skip-bad):\n%s", report.summary())
    pairs = report.good_pairs(scan.pairs)
    if not pairs:
        raise InputError(f"{scan.root}: no valid image/mask pair found with the {scan.layout!r} layout")
    splits = split_pairs(pairs, scan.root, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    datalist: dict[str, Any] = build_datalist(splits, output.resolve().parent)
    summary: dict[str, Any] = {
        "layout": scan.layout,
        "dataset_dir": _rel(scan.root, output.resolve().parent),
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "official_splits": sorted({p.split for p in pairs if p.split}),
        "counts": {s: len(splits[s]) for s in SPLITS},
        "skipped": sorted(_rel(p, scan.root) for p in {pr.path for pr in report.problems}),
    }
    groups = Counter(p.group for p in pairs if p.group)
    if groups:
        summary["groups"] = {s: dict(sorted(Counter(p.group for p in splits[s]).items())) for s in SPLITS}
    datalist["summary"] = summary
    write_datalist(datalist, output)
    counts = summary["counts"]
    logger.info(
        "%s: %d training, %d validation, %d test pairs (%s layout, seed %d, %d skipped) -> %s",
        scan.root,
        counts["training"],
        counts["validation"],
        counts["test"],
        scan.layout,
        seed,
        len(report.bad_pairs),
        output,
    )
    return datalist
