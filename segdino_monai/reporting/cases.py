"""The evaluated cases behind a report: per-image metrics from the CSV, and each case's image, reference and mask.

An evaluation writes, for every image, the predicted mask ``<name>_mask.png`` and the reference mask as it was
scored ``<name>_label.png`` (after thresholding, merging and any resizing) into its predictions folder, so that a
report shows exactly what the metrics compared. ``<name>`` follows the writer's rule
(:func:`segdino_monai.utils.naming.output_names`) over all the evaluated images, which are the rows of the
metrics table: ``a.jpg`` and ``a.png`` evaluated together have ``a.jpg_mask.png`` and ``a.png_mask.png``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segdino_monai.io.images import read_image
from segdino_monai.utils.errors import InputError
from segdino_monai.utils.naming import output_names

__all__ = ["CaseImages", "EvaluatedImage", "load_case", "rank_cases", "read_metrics_csv"]


@dataclass
class EvaluatedImage:
    """One row of ``metrics_per_image.csv``: the image path and its metric values (NaN where undefined)."""

    filename: str
    values: dict[str, float]


@dataclass
class CaseImages:
    """A case's pictures, all at the size the metrics were computed at.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, or ``None`` when the source image can no longer be read.
        reference: ``(H, W)`` class indices of the reference (ground truth) mask.
        prediction: ``(H, W)`` class indices of the predicted mask.
    """

    image: np.ndarray | None
    reference: np.ndarray
    prediction: np.ndarray


def read_metrics_csv(path: str | Path) -> tuple[list[str], list[EvaluatedImage]]:
    """Read ``metrics_per_image.csv``: returns the metric names and one entry per evaluated image."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0] != "filename":
            raise InputError(f"{path} is not a per-image metrics table (its first column must be 'filename')")
        names = header[1:]
        rows = []
        for line, row in enumerate(reader, 2):
            if len(row) != len(header):
                raise InputError(f"{path}, line {line}: {len(row)} columns where the header has {len(header)}")
            rows.append(EvaluatedImage(row[0], {n: _number(v) for n, v in zip(names, row[1:], strict=True)}))
    return names, rows


def rank_cases(rows: list[EvaluatedImage], metric: str, count: int) -> tuple[list[int], list[int]]:
    """Indices of the ``count`` worst (lowest ``metric`` first) and best (highest first) images, never overlapping.

    Images whose ``metric`` is undefined (NaN) are left out of both lists.
    """
    defined = [i for i, row in enumerate(rows) if not math.isnan(row.values[metric])]
    ascending = sorted(defined, key=lambda i: (rows[i].values[metric], i))
    worst = ascending[:count]
    best = [i for i in reversed(ascending) if i not in worst][:count]
    return worst, best


def load_case(source: str, predictions_dir: str | Path, name: str | None = None) -> CaseImages:
    """Load one case: its image (resized to the masks' size when the metrics were not at the original size).

    Args:
        source: the image path (a row of the metrics table).
        predictions_dir: the folder of the masks.
        name: the output name of ``source`` among the run's images (``output_names(all sources)[source]``);
            default: its name when evaluated alone (the file stem).

    Raises:
        FileNotFoundError: the predicted or reference mask of ``source`` is not in ``predictions_dir``.
    """
    stem = Path(predictions_dir) / (name if name is not None else output_names([source])[source])
    masks = []
    for kind in ("label", "mask"):
        path = Path(f"{stem}_{kind}.png")
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: evaluate again to write the masks of {source}")
        with Image.open(path) as mask:
            masks.append(_class_indices(np.asarray(mask)))
    reference, prediction = masks
    image = None
    try:  # through the package's reader: TIFF, 16-bit and palette sources look as they were scored
        rgb = Image.fromarray(read_image(source))
    except InputError:  # moved, deleted or unreadable since the evaluation: the case shows its masks alone
        rgb = None
    if rgb is not None:
        if rgb.size != (reference.shape[1], reference.shape[0]):
            rgb = rgb.resize((reference.shape[1], reference.shape[0]), Image.Resampling.BILINEAR)
        image = np.asarray(rgb)
    return CaseImages(image, reference, prediction)


def _class_indices(mask: np.ndarray) -> np.ndarray:
    """Masks are written 0/255 when binary and as class indices otherwise."""
    mask = mask if mask.ndim == 2 else mask[..., 0]
    return (mask > 0).astype(np.uint8) if set(np.unique(mask).tolist()) <= {0, 255} else mask.astype(np.uint8)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
