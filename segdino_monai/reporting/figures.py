"""The report's figures as PNG bytes: metric distributions, training curves and case panels.

Figures are drawn on matplotlib's ``Figure`` with the Agg canvas (no pyplot): no global state, no display needed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from skimage.segmentation import find_boundaries

from segdino_monai.io.overlay import PALETTE, overlay
from segdino_monai.reporting.cases import CaseImages
from segdino_monai.reporting.curves import TrainingCurves

__all__ = ["case_figure", "curves_figure", "distributions_figure", "metric_label"]

REFERENCE_COLOUR = (0, 230, 0)
PREDICTION_COLOUR = (255, 140, 0)
_SPLITS = (("train_", "training"), ("val_", "validation"), ("test_", "test"))
_LABELS = (
    ("hd95", "HD95 (px)"),
    ("hausdorff", "HD95 (px)"),
    ("dice", "Dice"),
    ("iou", "IoU"),
    ("uncertainty", "Uncertainty"),
)


def metric_label(name: str, with_split: bool = False) -> str:
    """A reader's name for a metric key (``test_mean_dice`` -> ``Dice``); unknown keys are returned as they are.

    A class's own column (``test_mean_dice_benign``, see :class:`~segdino_monai.handlers.SegmentationReport`) names
    its class: ``Dice (benign)``. With ``with_split`` the training or validation prefix is kept in words
    (``val_mean_dice`` -> ``validation Dice``). The columns of a test-time augmented prediction (``tta_mean_dice``,
    ``tta_uncertainty``) are labelled ``TTA Dice``, ``TTA uncertainty``.
    """
    lowered = name.lower()
    found = next(((key, label) for key, label in _LABELS if key in lowered), None)
    if found is None:
        return name
    key, label = found
    suffix = name[lowered.index(key) + len(key) :]
    if suffix.startswith("_") and len(suffix) > 1:
        label = f"{label} ({suffix[1:]})"
    if lowered.startswith("tta_"):
        label = f"TTA {label[0].lower()}{label[1:]}" if label == "Uncertainty" else f"TTA {label}"
    split = next((words for prefix, words in _SPLITS if lowered.startswith(prefix)), "")
    return f"{split} {label}" if with_split and split and label != name else label


def distributions_figure(values: Mapping[str, Sequence[float]]) -> bytes:
    """One row per metric: a histogram and a box plot of its defined (finite) per-image values."""
    fig = Figure(figsize=(9, 2.4 * len(values)), layout="constrained")
    axes = fig.subplots(len(values), 2, squeeze=False, width_ratios=(3, 2))
    for (name, raw), (hist, box) in zip(values.items(), axes, strict=True):
        finite = np.asarray(raw, dtype=float)
        finite = finite[np.isfinite(finite)]
        label = metric_label(name)
        bounded = label.removeprefix("TTA ").startswith(("Dice", "IoU", "Uncertainty", "uncertainty"))
        hist.hist(finite, bins=np.linspace(0, 1, 21) if bounded else 20, color="#4878a8", edgecolor="white")
        hist.set_xlabel(label)
        hist.set_ylabel("images")
        hist.yaxis.set_major_locator(MaxNLocator(integer=True))
        if finite.size:
            hist.axvline(finite.mean(), color="#c03030", linestyle="--", label=f"mean {finite.mean():.3f}")
            hist.legend(loc="upper left" if bounded else "upper right", frameon=False)
            box.boxplot(finite, orientation="horizontal", widths=0.5, showmeans=True)
        if bounded:
            hist.set_xlim(0, 1)
            box.set_xlim(0, 1)
        box.set_yticks([])
        box.set_xlabel(label)
        excluded = len(raw) - finite.size
        box.set_title(f"{finite.size} images" + (f" ({excluded} undefined, left out)" if excluded else ""), fontsize=9)
    return png(fig)


def curves_figure(curves: TrainingCurves, metric: str = "val_mean_dice") -> bytes:
    """Training loss per epoch (left) and the epoch metrics, the best ``metric`` epoch marked (right)."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    loss_axis, metric_axis = fig.subplots(1, 2)
    if curves.loss:
        epochs, loss = zip(*curves.loss, strict=True)
        loss_axis.plot(epochs, loss, marker="o", markersize=3, color="#4878a8")
    loss_axis.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="Loss")
    for name, points in sorted(curves.metrics.items()):
        if points:
            epochs, values = zip(*points, strict=True)
            metric_axis.plot(epochs, values, marker="o", markersize=3, label=metric_label(name, with_split=True))
    best = curves.best_epoch(metric)
    if best is not None:
        best_label = f"best {metric_label(metric, with_split=True)}: epoch {best[0]}"
        metric_axis.axvline(best[0], color="grey", linestyle=":", label=best_label)
    for axis in (loss_axis, metric_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    metric_axis.set(xlabel="epoch", ylabel="value", title="Metrics per epoch")
    if curves.metrics:
        metric_axis.legend(frameon=False, fontsize=8)
    return png(fig)


def case_figure(case: CaseImages, title: str) -> bytes:
    """Image | reference | prediction, the masks drawn over the image.

    The prediction panel also outlines the reference, so that misses and false alarms show at a glance.
    """
    height, width = case.reference.shape
    fig = Figure(figsize=(9, 0.7 + 3 * min(height / width, 2.0)), layout="constrained")  # panels 3 inches wide
    axes = fig.subplots(1, 3)
    base = case.image if case.image is not None else np.zeros((*case.reference.shape, 3), dtype=np.uint8)
    axes[0].imshow(base)
    axes[0].set_title("image" if case.image is not None else "image (source file not found)", fontsize=10)
    axes[1].imshow(_overlay(base, case.reference, REFERENCE_COLOUR))
    axes[1].set_title("reference (ground truth)", fontsize=10)
    shown = _overlay(base, case.prediction, PREDICTION_COLOUR)
    shown[find_boundaries(case.reference, mode="thick")] = REFERENCE_COLOUR
    axes[2].imshow(shown)
    axes[2].set_title("prediction (green line: reference)", fontsize=10)
    for axis in axes:
        axis.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return png(fig)


def _overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.4) -> np.ndarray:
    """Fill each class of ``mask`` (class 1 in ``colour``, others in the palette) and outline it."""
    colours = (colour, *PALETTE[1:])
    out = overlay(image, mask, alpha, colours)
    for index in range(1, int(mask.max(initial=0)) + 1):
        out[find_boundaries(mask == index, mode="inner")] = colours[(index - 1) % len(colours)]
    return out


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()
