"""DICOM in, segmentation out: run the bundle's inference on every image instance of a set of files and folders.

The network, its weights, the inferer and the modality's eval preprocessing all come from the bundle's
``inference.json`` (through :func:`segdino_monai.engines.bundle_workflow`), so what runs here is what the bundle
runs; only the loader differs (:func:`~segdino_monai.dicom.reader.read_image` instead of ``LoadImaged``). Predictions
are inverted to the source grid (``Invertd`` on probabilities, then the threshold), so every output is
pixel-aligned with the source.

Per instance, ``OUT/<SOPInstanceUID or file stem>/`` holds ``seg.dcm`` (single-frame sources, or multi-frame ones
with a frame of reference), ``mask.png``, ``overlay.png``, ``mask.nii.gz`` and ``report.json``; for multi-frame
sources that highdicom cannot encode (cine loops without a frame of reference) ``frame_NNNN_mask.png`` and
``frame_NNNN_overlay.png`` per frame and a ``frames.json`` sidecar with the SOP Instance UID and frame numbers
replace ``seg.dcm``. A folder appears only when complete (built under a hidden name, then renamed); inputs are
only read. ``OUT/summary.json`` lists what was processed, what was skipped and why.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged

from segdino_monai.dicom.reader import DicomReadError, is_itk_file, read_image
from segdino_monai.dicom.writer import (
    DEFAULT_TASK,
    SegOptions,
    SegUnsupportedError,
    segment_areas,
    write_json,
    write_nifti,
    write_overlay,
    write_png_mask,
    write_seg,
)

__all__ = ["DicomSegmenter", "RunSummary", "find_inputs", "run_dicom"]

logger = logging.getLogger(__name__)

#: files never tried as images when a folder is searched (sidecars and notes).
_IGNORED_SUFFIXES = {".json", ".txt", ".md", ".csv", ".xml", ".html", ".log", ".py", ".sh"}
_REPORT = "report.json"


def find_inputs(inputs: Sequence[str | Path], exclude: Iterable[str | Path] = ()) -> list[Path]:
    """The files to process: files as given, folders searched recursively (sorted), DICOMDIRs resolved.

    A DICOMDIR given as a file is replaced by the files it references; inside folders, DICOMDIR files are passed
    over (the files they reference are found by the search). Sidecar files (``.json``, ``.txt``, ...) inside
    folders are passed over; a file named explicitly is always tried.

    Args:
        inputs: files and folders.
        exclude: folders not to search (the output folder).

    Raises:
        FileNotFoundError: when an input does not exist.
    """
    excluded = [Path(e).resolve() for e in exclude]
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"Input not found: {path}")
        if path.is_file():
            found.extend(_dicomdir_files(path) if path.name.upper() == "DICOMDIR" else [path])
            continue
        for child in sorted(path.rglob("*")):
            resolved = child.resolve()
            if any(resolved == e or e in resolved.parents for e in excluded):
                continue
            if child.is_file() and not child.name.startswith(".") and child.name.upper() != "DICOMDIR":
                if child.suffix.lower() not in _IGNORED_SUFFIXES:
                    found.append(child)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _dicomdir_files(path: Path) -> list[Path]:
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    try:
        return sorted(Path(instance.path) for instance in FileSet(dcmread(str(path))))
    except Exception as err:
        raise ValueError(f"{path}: cannot read DICOMDIR ({err})") from err


class DicomSegmenter:
    """The bundle's network, preprocessing, inferer and postprocessing, applied to one image frame at a time.

    Args:
        bundle_root: the bundle folder (default: found from the working directory).
        backbone_weights: DINOv3 weights file (default: the bundle's); ``"random"`` for tests.
        checkpoint: decoder checkpoint (default: the bundle's ``models/model.pt``).
        modality: preprocessing preset (default: the bundle's).
        overrides: further bundle config overrides (``{"network_def#backbone_kwargs": {...}}``, ...).
    """

    def __init__(
        self,
        bundle_root: str | Path | None = None,
        backbone_weights: str | None = None,
        checkpoint: str | Path | None = None,
        modality: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        from segdino_monai.engines import bundle_workflow, require_file
        from segdino_monai.transforms import prediction_postprocessing

        # a non-empty dataset_dir makes a missing weights file an error rather than the demo's random backbone
        settings = {"backbone_weights": backbone_weights, "modality": modality, "dataset_dir": "dicom-input"}
        workflow = bundle_workflow("infer", bundle_root, **{**settings, **dict(overrides or {})})
        workflow.initialize()
        parser = workflow.parser
        self.modality: str = parser.get_parsed_content("modality")
        self.num_classes = int(parser.get_parsed_content("num_classes"))
        self.device = parser.get_parsed_content("device")
        self.network = parser.get_parsed_content("network")
        path = checkpoint or require_file(
            f"{parser.get_parsed_content('ckpt_dir')}/model.pt",
            "Trained decoder",
            "Train first, or pass --checkpoint <model.pt> (or --bundle-root of a trained bundle).",
        )
        self.checkpoint = str(path)
        self.network.load_decoder(self.checkpoint)
        self.network.eval()
        self.inferer = parser.get_parsed_content("inferer")
        bundle_preprocessing = parser.get_parsed_content("preprocessing")
        # the preset without its loader: images arrive already loaded as (3, H, W) RGB MetaTensors
        self.preprocessing = Compose([t for t in bundle_preprocessing.transforms if not isinstance(t, LoadImaged)])
        invert = Invertd("pred", transform=self.preprocessing, orig_keys="image", nearest_interp=False, to_tensor=True)
        self.postprocessing = prediction_postprocessing(
            self.num_classes,
            largest_component=bool(parser.get_parsed_content("largest_component")),
            fill_holes=bool(parser.get_parsed_content("fill_holes")),
            invert=invert,
        )
        self.model_name = f"SegDINO {parser.get_parsed_content('backbone')} ({Path(self.checkpoint).name})"

    @torch.no_grad()
    def __call__(self, image: MetaTensor) -> np.ndarray:
        """Segment one ``(3, H, W)`` frame on 0..255; returns the ``(H, W)`` uint8 class-index mask at its size."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) frame, got {tuple(image.shape)}")
        data = self.preprocessing({"image": image})
        batch = data["image"].unsqueeze(0).to(self.device)
        logits = self.inferer(batch, self.network)
        data["pred"] = torch.as_tensor(logits[0]).detach().cpu()
        mask = self.postprocessing(data)["pred"]
        out = np.asarray(torch.as_tensor(mask).cpu()).astype(np.uint8)[0]
        if out.shape != tuple(image.shape[1:]):
            raise RuntimeError(f"prediction {out.shape} is not at the image size {tuple(image.shape[1:])}")
        return out


@dataclass
class RunSummary:
    """What a run did: per input file, its outcome.

    ``processed``: SEG written; ``fallback``: no SEG (reason given), PNG/NIfTI only, with per-frame PNG masks and a
    ``frames.json`` sidecar for multi-frame sources; ``done``: skipped
    because its outputs exist; ``skipped``: bad input (with reason); ``failed``: readable input whose processing
    failed (with reason).
    """

    processed: list[dict[str, Any]] = field(default_factory=list)
    fallback: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped or failed."""
        return not (self.skipped or self.failed)

    def as_dict(self) -> dict[str, Any]:
        """The summary as written to ``summary.json``."""
        counts = {k: len(getattr(self, k)) for k in ("processed", "fallback", "done", "skipped", "failed")}
        return {"counts": counts, **{k: getattr(self, k) for k in counts}}


def _header(path: Path) -> Any | None:
    """The DICOM header (no pixels) or ``None`` when it cannot be read (reported later, when reading the image)."""
    if is_itk_file(path):
        return None
    from pydicom import dcmread

    try:
        return dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:
        return None


def _instance_name(path: Path, header: Any | None, output: Path, taken: set[str]) -> str:
    """``<SOPInstanceUID>`` (or the file stem), made unique when another file with the same UID already owns it."""
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    uid = str(header.get("SOPInstanceUID", "")) if header is not None else ""
    name = uid or stem
    report = output / name / _REPORT
    owner = _report_source(report)
    if name in taken or (owner is not None and owner != str(path.resolve())):
        name = f"{name}__{stem}"
    return name


def _report_source(report: Path) -> str | None:
    import json

    try:
        return str(json.loads(report.read_text(encoding="utf-8"))["source_file"])
    except Exception:
        return None


def _frames_of(image: MetaTensor) -> list[tuple[int, MetaTensor]]:
    """``(frame number, (3, H, W) frame)`` pairs of a ``(3, H, W)`` or ``(3, F, H, W)`` image."""
    numbers = list(image.meta["frame_numbers"])
    if image.ndim == 3:
        return [(numbers[0], image)]
    frames = []
    for index, number in enumerate(numbers):
        meta = dict(image.meta)
        meta["frame_numbers"] = [number]
        frames.append((number, MetaTensor(image.as_tensor()[:, index].clone(), affine=image.affine, meta=meta)))
    return frames


def _source_info(path: Path, image: MetaTensor) -> dict[str, Any]:
    meta = image.meta
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")
    return {
        "source_file": str(path.resolve()),
        **{k: meta.get(k) for k in keys if meta.get(k) is not None},
        "number_of_frames": meta["number_of_frames"],
        "frame_numbers": list(meta["frame_numbers"]),
        "original_size": list(meta["original_size"]),
        "pixel_size_mm": meta.get("pixel_size_mm"),
        "pixel_size_source": meta.get("pixel_size_source"),
        "ultrasound_region": meta.get("ultrasound_region"),
        "photometric_interpretation": meta.get("photometric_interpretation"),
        "decoder": meta["decoder"],
    }


def _write_instance(
    path: Path, image: MetaTensor, masks: list[tuple[int, np.ndarray]], folder: Path, options: SegOptions, labels: list
) -> tuple[str, dict[str, Any]]:
    """Write the outputs of one instance into ``folder``; returns the outcome (processed/fallback) and its report."""
    info = _source_info(path, image)
    spacing = info["pixel_size_mm"]
    stack = np.stack([m for _, m in masks])
    frames = _frames_of(image)
    single = image.ndim == 3
    report: dict[str, Any] = {**info, "outputs": {}, "segments": []}
    is_dicom = not is_itk_file(path)
    whole = len(masks) == int(info["number_of_frames"])
    seg_note = None
    if is_dicom and whole:
        try:
            write_seg(path, stack[0] if single else stack, folder / "seg.dcm", options, len(labels))
            report["outputs"]["seg"] = "seg.dcm"
        except SegUnsupportedError as err:
            seg_note = str(err)
    elif is_dicom:
        seg_note = "only some frames were segmented; a SEG would claim the others are empty"
    else:
        seg_note = "not a DICOM source"
    if single:
        write_png_mask(stack[0], folder / "mask.png")
        write_overlay(frames[0][1].numpy(), stack[0], folder / "overlay.png")
        report["outputs"].update({"mask_png": "mask.png", "overlay_png": "overlay.png"})
    else:
        per_frame = []
        for (number, frame), (_, mask) in zip(frames, masks, strict=True):
            write_png_mask(mask, folder / f"frame_{number:04d}_mask.png")
            write_overlay(frame.numpy(), mask, folder / f"frame_{number:04d}_overlay.png")
            per_frame.append(
                {
                    "frame_number": number,
                    "mask_png": f"frame_{number:04d}_mask.png",
                    "overlay_png": f"frame_{number:04d}_overlay.png",
                }
            )
        report["outputs"]["frames"] = per_frame
    write_nifti(stack[0] if single else stack, folder / "mask.nii.gz", spacing)
    report["outputs"]["nifti"] = "mask.nii.gz"
    for number, mask in masks:
        report["segments"].append({"frame_number": number, "areas": segment_areas(mask, labels, spacing)})
    report["area_unit"] = "mm2" if spacing else "pixels (pixel size unknown)"
    outcome = "processed"
    if seg_note is not None:
        report["seg_not_written"] = seg_note
        outcome = "fallback"
        if not single:
            sidecar = {
                k: info.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
            }
            sidecar.update(
                {
                    "source_file": info["source_file"],
                    "number_of_frames": info["number_of_frames"],
                    "reason": seg_note,
                    "frames": report["outputs"]["frames"],
                }
            )
            write_json(sidecar, folder / "frames.json")
            report["outputs"]["sidecar"] = "frames.json"
    write_json(report, folder / _REPORT)  # written last: its presence marks the folder as complete
    return outcome, report


def _publish(staging: Path, target: Path) -> None:
    """Move a complete staging folder onto ``target``, replacing an older one (``--overwrite``)."""
    old = None
    if target.exists():
        old = target.parent / f".old-{target.name}-{os.getpid()}-{time.time_ns()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_dicom(
    inputs: Sequence[str | Path],
    output: str | Path,
    segmenter: DicomSegmenter,
    overwrite: bool = False,
    frames: Sequence[int] | None = None,
    seg_options: SegOptions | None = None,
    progress: bool = True,
) -> RunSummary:
    """Segment every image instance found in ``inputs`` and write its outputs under ``output``.

    Args:
        inputs: DICOM (or NIfTI/MHA/NRRD) files and folders (searched recursively).
        output: the output folder (created).
        segmenter: the network and its transforms (:class:`DicomSegmenter`).
        overwrite: redo instances whose outputs exist (default: skip them).
        frames: DICOM frame numbers (from 1) to segment in multi-frame files (default all).
        seg_options: SEG descriptions; default: the segmenter's modality's task.
        progress: show a progress bar.

    Returns:
        The :class:`RunSummary`, also written to ``output/summary.json``.
    """
    from tqdm import tqdm

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    options = seg_options or SegOptions(task=DEFAULT_TASK.get(segmenter.modality, "lesion"))
    if options.model_name == "SegDINO":  # the default: name the backbone and checkpoint
        options.model_name = segmenter.model_name
    labels = options.labels(max(1, segmenter.num_classes - 1))
    summary = RunSummary()
    files = find_inputs(inputs, exclude=[output])
    taken: set[str] = set()
    for path in tqdm(files, desc="segdino dicom", unit="file", disable=not progress):
        header = _header(path)
        name = _instance_name(path, header, output, taken)
        taken.add(name)
        target = output / name
        entry: dict[str, Any] = {"file": str(path), "output": str(target)}
        if not overwrite and _report_source(target / _REPORT) == str(path.resolve()):
            summary.done.append(entry)
            continue
        try:
            image = read_image(path, None if frames is None or header is None else _valid_frames(header, frames))
        except DicomReadError as err:
            summary.skipped.append({"file": str(path), "reason": str(err).removeprefix(f"{path}: ")})
            logger.warning("skipped %s", err)
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".partial-{name}-", dir=output))
        try:
            masks = [(number, segmenter(frame)) for number, frame in _frames_of(image)]
            outcome, report = _write_instance(path, image, masks, staging, options, labels)
            _publish(staging, target)
        except Exception as err:
            shutil.rmtree(staging, ignore_errors=True)
            summary.failed.append({"file": str(path), "reason": f"{type(err).__name__}: {err}"})
            logger.error("failed %s: %s", path, err)
            continue
        entry.update({"SOPInstanceUID": report.get("SOPInstanceUID"), "frames": len(masks)})
        if outcome == "fallback":
            entry["reason"] = report["seg_not_written"]
        getattr(summary, outcome).append(entry)
    write_json(summary.as_dict(), output / "summary.json")
    _log_summary(summary, output)
    return summary


def _valid_frames(header: Any, frames: Sequence[int]) -> list[int] | None:
    """The requested frames that exist in a file (single-frame files: all, i.e. ``None``)."""
    count = int(header.get("NumberOfFrames", 1) or 1)
    if count == 1:
        return None
    chosen = [f for f in frames if 1 <= int(f) <= count]
    return chosen or None


def _log_summary(summary: RunSummary, output: Path) -> None:
    counts = summary.as_dict()["counts"]
    logger.info(
        "segdino dicom: %d processed (SEG), %d fallback (no SEG: PNG/NIfTI, frames.json for cine), %d already done, "
        "%d skipped, %d failed; summary in %s",
        counts["processed"],
        counts["fallback"],
        counts["done"],
        counts["skipped"],
        counts["failed"],
        output / "summary.json",
    )
    for item in summary.skipped + summary.failed:
        logger.warning("  %s: %s", item["file"], item["reason"])
