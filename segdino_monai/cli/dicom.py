"""``segdino dicom``: DICOM (and DICOMweb) images to DICOM SEG, masks, overlays and reports, restartable."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from segdino_monai.cli.options import (
    add_derived_object_options,
    add_model_options,
    add_progress_option,
    add_set_option,
    add_task_option,
    check_task,
    distributed_overrides,
    load_predictor,
    serving_overrides,
)

if TYPE_CHECKING:
    from segdino_monai.services.dicom_batch import RunSummary

__all__ = ["add_parser", "frame_numbers", "run"]

logger = logging.getLogger("segdino_monai")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the dicom sub-command."""
    dicom = commands.add_parser(
        "dicom",
        help="segment DICOM images: DICOM SEG, PNG masks and overlays, NIfTI and a JSON report per instance",
        description="Run the bundle's inference on every image instance in the inputs (files, folders searched "
        "recursively, DICOMDIR) and write OUT/<SOPInstanceUID>/: a DICOM SEG (one frame per frame of a cine loop), "
        "PNG masks and overlays, NIfTI and report.json; a subset of a cine's frames (--frames) gets per-frame PNG "
        "masks and a frames.json sidecar instead of a SEG. Bad files are listed and skipped (exit 1); "
        "a missing input, a folder with nothing to segment or an output folder inside an input folder stop the "
        "command (exit 2). After Ctrl-C or SIGTERM, rerun the same command to finish. DICOMweb study or series URLs "
        "are retrieved (QIDO-RS/WADO-RS) into OUT/dicomweb/ and segmented like files; --stow-url stores the SEGs on a "
        "DICOMweb server (STOW-RS): an instance whose results were not stored makes the exit status 1.",
    )
    dicom.add_argument(
        "inputs",
        nargs="+",
        help="DICOM files or folders (also NIfTI/MHA/NRRD 2D files), or DICOMweb study/series URLs "
        "(http(s)://HOST/.../dicom-web/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>])",
    )
    dicom.add_argument("-o", "--output", required=True, help="output folder")
    add_model_options(dicom)
    dicom.add_argument(
        "--stow-url",
        metavar="URL",
        help="also store every DICOM result (the SEGs) by STOW-RS on this DICOMweb server (http(s)://HOST/dicom-web)",
    )
    dicom.add_argument(
        "--dicomweb-token",
        metavar="TOKEN",
        help="bearer token for the DICOMweb server of the URL inputs and --stow-url (default: $SEGDINO_DICOMWEB_TOKEN)",
    )
    add_task_option(dicom)
    dicom.add_argument(
        "--frames",
        type=frame_numbers,
        nargs="+",
        metavar="N",
        help="frame numbers (from 1) of multi-frame files: 5, 1,15,30 or 10-20; a multi-frame file without one of "
        "them is skipped with the reason; single-frame images are segmented whole",
    )
    dicom.add_argument("--labelmap", action="store_true", help="write LABELMAP SEG instead of BINARY")
    dicom.add_argument("--series-description", default="SegDINO segmentation", help="SEG series description")
    dicom.add_argument("--series-number", type=int, default=901, help="SEG series number")
    dicom.add_argument("--content-creator", default="SegDINO^Algorithm", help="SEG content creator (person name)")
    add_derived_object_options(dicom)
    dicom.add_argument("--overwrite", action="store_true", help="redo instances whose outputs exist")
    add_progress_option(dicom)
    add_set_option(dicom)
    dicom.set_defaults(func=run)


def frame_numbers(value: str) -> list[int]:
    """``--frames`` values as people type them: ``5``, ``1,15,30``, ``10-20`` (numbers from 1)."""
    numbers: list[int] = []
    try:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            first, dash, last = part.partition("-") if not part.startswith("-") else (part, "", "")
            low = int(first)
            high = int(last) if dash else low
            if low < 1 or high < low:
                raise ValueError
            numbers.extend(range(low, high + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: frame numbers start at 1; give numbers, lists (1,15,30) or ranges (10-20)"
        ) from None
    if not numbers:
        raise argparse.ArgumentTypeError(f"{value!r}: no frame number")
    return numbers


def run(args: argparse.Namespace) -> int:
    """Segment the inputs; ``--set`` ids and every input are checked before the model loads."""
    from segdino_monai.dicom.seg import DEFAULT_TASK, SegOptions
    from segdino_monai.services.dicom_batch import run_dicom
    from segdino_monai.services.dicom_inputs import check_frames, check_output, find_inputs
    from segdino_monai.services.dicomweb import STAGING_FOLDER, TOKEN_ENV, check_stow_url, is_url, retrieve
    from segdino_monai.services.staging import Terminated, sigterm_as_interrupt

    urls = [item for item in args.inputs if is_url(item)]
    local = [item for item in args.inputs if not is_url(item)]
    token = args.dicomweb_token or os.environ.get(TOKEN_ENV) or None
    overrides = serving_overrides(args)
    overrides.update(distributed_overrides())
    logging.getLogger("highdicom").setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    with sigterm_as_interrupt():
        try:
            # bad inputs, output folder or frames stop the command before the model loads
            frames = check_frames([n for group in args.frames for n in group]) if args.frames else None
            check_task(args.task)
            check_output(args.output, local)
            if local:
                find_inputs(local, exclude=[args.output])
            stow_root = check_stow_url(args.stow_url, token) if args.stow_url else None
            retrieved = [path for url in urls for path in retrieve(url, Path(args.output) / STAGING_FOLDER, token)]
            segmenter = load_predictor(args, overrides)
            options = SegOptions(
                task=args.task or DEFAULT_TASK.get(segmenter.modality, "lesion"),
                segmentation_type="LABELMAP" if args.labelmap else "BINARY",
                series_description=args.series_description,
                series_number=args.series_number,
                content_creator_name=args.content_creator,
                also_sc=args.also_sc,
                also_sr=args.also_sr,
            )
            summary = run_dicom(
                [*local, *retrieved], args.output, segmenter, args.overwrite, frames, options, not args.no_progress
            )
        except KeyboardInterrupt as err:
            how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted (Ctrl-C)"
            logger.error(
                "segdino dicom %s: finished instances are kept in %s and unfinished ones removed; run the same "
                "command again to finish",
                how,
                args.output,
            )
            return 143 if isinstance(err, Terminated) else 130
    if stow_root is None or int(os.environ.get("RANK", "0")) != 0:  # under torchrun, the first process stores
        return 0 if summary.ok else 1
    return 0 if _stow(summary, args.output, stow_root, token) and summary.ok else 1


def _stow(summary: RunSummary, output: str, root: str, token: str | None) -> bool:
    """Store the DICOM results of the finished instances by STOW-RS, recorded in ``summary.json``; True if all were."""
    from segdino_monai.services.dicomweb import record_in_summary, store_results

    finished = summary.processed + summary.fallback + summary.done
    result = store_results(finished, root, token)
    record_in_summary(output, "stow", result.as_dict())
    return result.ok
