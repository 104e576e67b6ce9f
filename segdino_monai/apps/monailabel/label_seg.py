"""The DICOM SEG of a final label saved in MONAI Label, written in the main environment.

The MONAI Label server's DICOMweb datastore (``lib/dicomweb.py``, MONAI Label environment) runs
``python -m segdino_monai.apps.monailabel.label_seg SOURCE LABEL OUT`` with the main environment's interpreter:
the SEG writer of ``segdino dicom`` (:func:`segdino_monai.dicom.seg.write_seg`, highdicom) needs pydicom 3,
which the MONAI Label environment cannot hold (monailabel 0.8.5 pins pydicom<3), and MONAI Label's own SEG writer
(dcmqi's ``itkimage2segimage``) is a program it downloads from GitHub, made for volumes.

Exit status 0: ``OUT`` written; 2: bad input (one line on stderr: the label does not fit the source, the source
cannot have a SEG, the label file cannot be read).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segdino_monai.dicom.seg import DEFAULT_TASK, SegOptions, write_seg
from segdino_monai.utils.errors import InputError

__all__ = ["LABEL_SERIES_DESCRIPTION", "LABEL_SERIES_NUMBER", "label_mask", "main", "write_label_seg"]

logger = logging.getLogger(__name__)

#: The final labels' SEG series (the model's own SEGs from ``segdino dicom`` are series 901, "SegDINO segmentation").
LABEL_SERIES_NUMBER = 902
LABEL_SERIES_DESCRIPTION = "SegDINO final label (MONAI Label)"


def label_mask(path: str | Path) -> np.ndarray:
    """The ``(H, W)`` binary mask (0/1) of a 2D label picture (PNG, as MONAI Label's 2D clients save them).

    Any value above 0 is foreground, so class-index and viewable 0/255 masks give the same mask.

    Raises:
        InputError: the file is not a picture PIL can read.
    """
    try:
        with Image.open(path) as picture:
            array = np.asarray(picture.convert("L") if picture.mode in ("P", "1") else picture)
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"label {path}: not a 2D picture ({err}); save 2D labels as PNG") from err
    if array.ndim == 3:  # RGB(A) painted labels: foreground wherever any colour channel is set
        array = array[..., :3].max(axis=-1)
    return (array > 0).astype(np.uint8)


def write_label_seg(
    source: str | Path, label: str | Path, out: str | Path, modality: str = "ultrasound", annotator: str = ""
) -> Path:
    """Write the SEG of the final ``label`` of the DICOM image ``source`` to ``out``.

    Its UIDs are derived from the source and the SEG options (:func:`~segdino_monai.dicom.seg.seg_uids`), so the
    label of an image saved again replaces its SEG in a PACS that overwrites instances.

    Args:
        source: the single-frame DICOM image the label was drawn on.
        label: the label picture, pixel-aligned with the source.
        out: the SEG file to write.
        modality: the served modality (ultrasound, endoscopy, dermoscopy), naming the segmented structure.
        annotator: ContentCreatorName (a DICOM person name); default the algorithm's.

    Raises:
        InputError: the label cannot be read or does not fit the source, or the source cannot have a SEG.
    """
    options = SegOptions(
        task=DEFAULT_TASK.get(modality, "lesion"),
        series_description=LABEL_SERIES_DESCRIPTION,
        series_number=LABEL_SERIES_NUMBER,
        algorithm_type="SEMIAUTOMATIC",  # a person's label, drawn from the model's proposal
        **({"content_creator_name": annotator} if annotator else {}),
    )
    try:
        return write_seg(source, label_mask(label), out, options)
    except ValueError as err:  # the label's size is not the source's (InputError is a ValueError too)
        if isinstance(err, InputError):
            raise
        raise InputError(f"label {label} does not fit the image {source}: {err}") from err


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``SOURCE LABEL OUT [--modality M] [--annotator NAME]``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the DICOM image")
    parser.add_argument("label", help="the label picture (PNG)")
    parser.add_argument("out", help="the SEG file to write")
    parser.add_argument("--modality", default="ultrasound", help="the served modality (default ultrasound)")
    parser.add_argument("--annotator", default="", help="ContentCreatorName of the SEG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        write_label_seg(args.source, args.label, args.out, args.modality, args.annotator)
    except InputError as err:
        print(str(err).splitlines()[0], file=sys.stderr)
        return 2
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the MONAI Label datastore
    sys.exit(main())
