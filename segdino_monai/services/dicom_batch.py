"""DICOM in, segmentation out: run the bundle's inference on every image instance of a set of files and folders.

Every image is segmented by the bundle's ``inference.json`` pipeline as it is (:class:`DicomSegmenter`): its loader
(the package's reader, which reads DICOM), preprocessing, network, inferer and postprocessing, with the modality's
config file and the overrides merged, so a change to the config reaches these outputs too; only the bundle's file
writer is left out, for the writers here. Predictions are inverted to the source grid (``Invertd`` on
probabilities, then the threshold), so every output is pixel-aligned with the source.

Per instance, ``OUT/<SOPInstanceUID or file stem>/`` holds ``seg.dcm``, ``mask.png`` and ``overlay.png`` (per frame
``frame_NNNN_mask.png`` and ``frame_NNNN_overlay.png`` for multi-frame sources), ``mask.nii.gz`` and
``report.json``; with ``SegOptions.also_sc`` a Secondary Capture overlay ``sc.dcm`` (``sc_NNNN.dcm`` per frame of a
multi-frame source), with ``SegOptions.also_sr`` a TID 1500 SR ``sr.dcm`` with each segment's area and maximum
diameter in mm. A multi-frame source's SEG has one frame per segmented source frame, each referencing its source
frame, also without a frame of reference (cine loops: :mod:`segdino_monai.dicom.seg_frames`). When only some frames
of a multi-frame source are segmented (``--frames``), a ``frames.json`` sidecar with the SOP Instance UID and frame
numbers replaces ``seg.dcm``; a source without the UIDs a SEG references gets everything but ``seg.dcm``, with the
reason.
A folder appears only when complete (built in a hidden ``.partial-<pid>-...`` folder, then renamed); the next run
removes the staging folders of runs that are gone (Ctrl-C, SIGTERM, SIGKILL), so a rerun finishes the work. Inputs
are only read. ``OUT/summary.json`` lists what was processed, what was skipped and why. A run that cannot proceed
at all (a missing input, a folder with nothing to segment, an output folder inside an input folder) raises
:class:`~segdino_monai.utils.errors.InputError` before writing anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from segdino_monai.dicom.seg import DEFAULT_TASK, SegOptions, write_seg
from segdino_monai.dicom.source import SegUnsupportedError, prepare_seg_source
from segdino_monai.io.dicom_reader import dcmread, frame_numbers, is_itk_file
from segdino_monai.io.masks import segment_areas
from segdino_monai.io.writers import write_nifti, write_overlay, write_png_mask
from segdino_monai.utils.atomic import write_json
from segdino_monai.utils.distributed import rank_and_world
from segdino_monai.utils.errors import InputError, input_error_message
from segdino_monai.utils.naming import file_stem

__all__ = [
    "DicomSegmenter",
    "RunSummary",
    "Terminated",
    "check_frames",
    "check_output",
    "find_inputs",
    "run_dicom",
    "sigterm_as_interrupt",
]

logger = logging.getLogger(__name__)

#: files never tried as images when a folder is searched (sidecars and notes).
_IGNORED_SUFFIXES = {".json", ".txt", ".md", ".csv", ".xml", ".html", ".log", ".py", ".sh"}
_REPORT = "report.json"
_STAGING = ".partial-"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_SAFE_NAME = re.compile(r"[^0-9A-Za-z._+-]")
_OLD = ".old-"


def find_inputs(inputs: Sequence[str | Path], exclude: Iterable[str | Path] = ()) -> list[Path]:
    """The files to process: files as given, folders searched recursively (sorted), DICOMDIRs resolved.

    A DICOMDIR given as a file is replaced by the files it references (those missing included: reading them then
    reports them); inside folders, DICOMDIR files are passed over (the files they reference are found by the search).
    Sidecar files (``.json``, ``.txt``, ...) and hidden files inside folders are passed over; a file named explicitly
    is always tried.

    Args:
        inputs: files and folders.
        exclude: folders not to search (the output folder).

    Raises:
        InputError: when an input does not exist, a DICOMDIR cannot be read, or a folder holds no file to try.
    """
    return [path for path, _ in _collect_inputs(inputs, exclude)]


def _collect_inputs(inputs: Sequence[str | Path], exclude: Iterable[str | Path] = ()) -> list[tuple[Path, str | None]]:
    """``(file, DICOMDIR that references it or None)`` for every file to process (see :func:`find_inputs`)."""
    excluded = [Path(e).resolve() for e in exclude]
    found: list[tuple[Path, str | None]] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"Input not found: {path} (check the path)")
        if path.is_file():
            if path.name.upper() == "DICOMDIR":
                found.extend((file, str(path)) for file in _dicomdir_files(path))
            else:
                found.append((path, None))
            continue
        before = len(found)
        for child in sorted(path.rglob("*")):
            resolved = child.resolve()
            if any(resolved == e or e in resolved.parents for e in excluded):
                continue
            if child.is_file() and not child.name.startswith(".") and child.name.upper() != "DICOMDIR":
                if child.suffix.lower() not in _IGNORED_SUFFIXES:
                    found.append((child, None))
        if len(found) == before:
            dicomdir = next((c for c in path.rglob("*") if c.name.upper() == "DICOMDIR"), None)
            hint = f"; give its DICOMDIR ({dicomdir}) instead" if dicomdir else ""
            raise InputError(
                f"No files to segment in input folder {path} (empty, or only hidden and sidecar files such as "
                f".json/.txt){hint}"
            )
        candidates = [file for file, _ in found[before:]]
        if not any(_is_image_file(file) for file in candidates):  # stops at the first DICOM file: cheap
            raise InputError(
                f"No DICOM (or NIfTI/MHA/NRRD) file in input folder {path}: {len(candidates)} file(s) looked at, "
                f"e.g. {candidates[0].name}; give a folder of DICOM files"
            )
    unique: dict[Path, tuple[Path, str | None]] = {}
    for path, origin in found:
        unique.setdefault(path.resolve(), (path, origin))
    return list(unique.values())


def _dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR references, whether they exist or not.

    pydicom's ``FileSet`` silently drops (with a warning) records whose file is missing, so the records'
    ReferencedFileID are read here: a missing file is then reported by name like any other bad input.
    """
    from pydicom import dcmread

    try:
        records = dcmread(str(path)).DirectoryRecordSequence
    except Exception as err:
        raise InputError(
            f"{path}: cannot read DICOMDIR ({type(err).__name__}: {err}); give its folder instead"
        ) from err
    files = []
    for record in records:
        if "ReferencedFileID" not in record:
            continue
        parts = record.ReferencedFileID
        parts = [parts] if isinstance(parts, str) else list(parts)
        files.append(_case_insensitive(path.parent, [str(part) for part in parts]))
    return sorted(dict.fromkeys(files))


def _case_insensitive(root: Path, parts: list[str]) -> Path:
    """``root/parts...``; where that does not exist, the same path matched case-insensitively (CD file systems)."""
    exact = root.joinpath(*parts)
    if exact.exists():
        return exact
    current = root
    for part in parts:
        match = None
        if current.is_dir():
            match = next((c for c in current.iterdir() if c.name.upper() == part.upper()), None)
        if match is None:
            return exact
        current = match
    return current


def check_output(output: str | Path, inputs: Sequence[str | Path]) -> Path:
    """Refuse an output folder that is a file, an input folder or inside one, or cannot be created or written.

    Nothing is created: the check runs before any work (and before the model loads).

    Args:
        output: the output folder.
        inputs: the input files and folders.

    Returns:
        ``output`` as a ``Path``.

    Raises:
        InputError: naming the folder and what to do.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"-o {output} is an existing file, not a folder: choose a folder for the outputs")
    resolved = output.resolve()
    for item in inputs:
        folder = Path(item).resolve()
        if folder.is_dir() and (resolved == folder or folder in resolved.parents):
            raise InputError(
                f"-o {output} is inside the input folder {item}: the outputs would mix with the inputs and be read "
                "as inputs on a rerun; choose an output folder outside it"
            )
    existing = next(p for p in (resolved, *resolved.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"-o {output}: {existing} is a file, so the folder cannot be created; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == resolved else f" ({existing} is not writable)"
        raise InputError(f"-o {output}: cannot write there{where}; choose a writable folder")
    return output


def check_frames(frames: Sequence[int] | None) -> list[int] | None:
    """``--frames`` checked (numbers from 1), sorted, duplicates removed; ``None`` for all frames.

    Raises:
        InputError: for frame numbers below 1 or an empty list.
    """
    if frames is None:
        return None
    numbers = sorted({int(f) for f in frames})
    bad = [n for n in numbers if n < 1]
    if bad or not numbers:
        raise InputError(
            f"--frames {' '.join(str(f) for f in frames) or '(none)'}: frame numbers start at 1 (DICOM frame numbers)"
        )
    return numbers


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled like Ctrl-C (the instance being written is discarded, the summary is written)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) as Ctrl-C would.

    Python's default for SIGTERM is to die at once, leaving staging folders behind and no summary; with this, the
    cleanup of :func:`run_dicom` runs. Only the main thread can set signal handlers: elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _clean_leftovers(output: Path) -> list[str]:
    """Remove the staging folders and temporary files that an interrupted run left in ``output``.

    A staging folder ``.partial-<pid>-...`` (and a replaced folder ``.old-<pid>-...``) belongs to a run that is
    over when its process is gone (Ctrl-C, SIGTERM, SIGKILL, power cut) or is this process; a folder of a run that
    is still going (another process writing into the same output) is left alone. Temporary files of the summary are
    removed too.
    """
    removed = []
    for child in output.iterdir():
        name = child.name
        if child.is_dir() and name.startswith((_STAGING, _OLD)):
            pid = name.split("-")[1] if name.count("-") >= 2 else ""
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            shutil.rmtree(child, ignore_errors=True)
            removed.append(name)
        elif child.is_file() and name.startswith(".summary.json."):
            child.unlink(missing_ok=True)
            removed.append(name)
    if removed:
        logger.info("removed %d leftover(s) of an interrupted run in %s: %s", len(removed), output, removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


class DicomSegmenter:
    """The bundle's ``inference.json`` pipeline, run on one image frame at a time: what the bundle runs, unchanged.

    The configs are ``inference.json``, the modality's ``configs/<modality>.json`` and the overrides, as for
    ``monai.bundle run inference``. The image is read by the config's own loader (its ``image_reader``, the
    package's reader, which reads DICOM and 2D ITK files; the frame of a multi-frame file is set on it per call), the
    config's ``preprocessing``, ``inferer`` and ``postprocessing`` follow, the last without its file writer
    (``SaveSegmentationd``): this pipeline writes DICOM SEG and its own files instead, as MONAI Label leaves a
    bundle's writers out (``post_filter``). Predictions are inverted to the source grid by the config's ``Invertd``.

    Args:
        bundle_root: the bundle folder (default: found from the working directory).
        backbone_weights: DINOv3 weights file (default: the bundle's); ``"random"`` for tests.
        checkpoint: decoder checkpoint (default: the bundle's ``models/model.pt``; none with the bundle's
            ``onnx_model`` override, whose ONNX file is the whole network).
        modality: the modality whose config file is merged (default: the bundle's default, endoscopy).
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
        from segdino_monai.transforms import SaveSegmentationd
        from segdino_monai.workflows import bundle_workflow, require_file

        # a non-empty dataset_dir makes a missing weights file an error rather than the demo's random backbone
        settings = {"backbone_weights": backbone_weights, "modality": modality, "dataset_dir": "dicom-input"}
        workflow = bundle_workflow("infer", bundle_root, **{**settings, **dict(overrides or {})})
        workflow.initialize()
        parser = workflow.parser
        self.modality: str = parser.get_parsed_content("modality")
        self.num_classes = int(parser.get_parsed_content("num_classes"))
        self.device = parser.get_parsed_content("device")
        self.network = parser.get_parsed_content("network")
        onnx_model = str(parser.get_parsed_content("onnx_model") or "")
        if onnx_model and checkpoint:
            raise InputError(
                f"--checkpoint {checkpoint} and --set onnx_model={onnx_model} were both given: the ONNX file holds the "
                "whole network, decoder included. Give one of them."
            )
        if onnx_model:  # ONNX Runtime runs the exported network (the bundle's onnx_model option); no model.pt
            path: str | Path = onnx_model
        else:
            path = checkpoint or require_file(
                f"{parser.get_parsed_content('ckpt_dir')}/model.pt",
                "Trained decoder",
                "Train first, or pass --checkpoint <model.pt> (or --bundle-root of a trained bundle).",
            )
            self.network.load_decoder(str(path))
        self.checkpoint = str(path)
        self.network.eval()
        self.inferer = parser.get_parsed_content("inferer")
        self.reader = parser.get_parsed_content("image_reader")
        self.preprocessing: Compose = parser.get_parsed_content("preprocessing")
        # the config's preprocessing starts with its `load` steps: their output is the source frame the writers draw on
        self.load_steps = len(parser.get_parsed_content("load"))
        postprocessing = parser.get_parsed_content("postprocessing").transforms
        self.postprocessing = Compose([t for t in postprocessing if not isinstance(t, SaveSegmentationd)])
        self.model_name = f"SegDINO {parser.get_parsed_content('backbone')} ({Path(self.checkpoint).name})"
        #: the decoder checkpoint's SHA-256: with the model name it tells the SEGs of a retrained model apart
        self.model_id = hashlib.sha256(Path(self.checkpoint).read_bytes()).hexdigest()

    @torch.no_grad()
    def segment(self, path: str | Path, frame: int | None = None) -> tuple[MetaTensor, np.ndarray]:
        """Read and segment one image (one ``frame``, from 1, of a multi-frame file).

        Returns:
            The source frame as the bundle's loader gives it, ``(3, H, W)`` on 0..255 with its meta data, and the
            ``(H, W)`` uint8 class-index mask at its size.

        Raises:
            InputError: (in the chain of the error) the file cannot be read as an image.
        """
        self.reader.frame = frame
        loaded = self.preprocessing({"image": str(path)}, end=self.load_steps)
        source = loaded["image"].clone()
        data = self.preprocessing(loaded, start=self.load_steps)
        logits = self.inferer(data["image"].unsqueeze(0).to(self.device), self.network)
        data["pred"] = torch.as_tensor(logits[0]).detach().cpu()
        mask = np.asarray(torch.as_tensor(self.postprocessing(data)["pred"]).cpu()).astype(np.uint8)[0]
        if mask.shape != tuple(source.shape[1:]):
            raise RuntimeError(f"prediction {mask.shape} is not at the image size {tuple(source.shape[1:])}")
        return source, mask

    def __call__(self, path: str | Path, frame: int | None = None) -> np.ndarray:
        """The ``(H, W)`` uint8 class-index mask of one image (see :meth:`segment`)."""
        return self.segment(path, frame)[1]


@dataclass
class RunSummary:
    """What a run did: per input file, its outcome.

    ``processed``: SEG written; ``fallback``: no SEG (reason given), PNG/NIfTI only, with per-frame PNG masks and a
    ``frames.json`` sidecar for multi-frame sources (some frames only); ``done``: skipped
    because its outputs exist; ``skipped``: bad input (with reason); ``failed``: readable input whose processing
    failed (with reason).
    """

    processed: list[dict[str, Any]] = field(default_factory=list)
    fallback: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was skipped or failed and the run was not interrupted."""
        return not (self.skipped or self.failed or self.interrupted)

    def as_dict(self) -> dict[str, Any]:
        """The summary as written to ``summary.json`` (``interrupted`` only when the run was)."""
        counts = {k: len(getattr(self, k)) for k in ("processed", "fallback", "done", "skipped", "failed")}
        out: dict[str, Any] = {"counts": counts, **{k: getattr(self, k) for k in counts}}
        if self.interrupted:
            out["interrupted"] = self.interrupted
        return out


def _is_image_file(path: Path) -> bool:
    """Whether a file may be an image for the bundle's reader (DICOM or a 2D ITK file).

    True for a NIfTI/MHA/NRRD name, a DICOM preamble, or a DICOM data set without preamble (old ACR-NEMA style)
    with image attributes.
    """
    if is_itk_file(path):
        return True
    try:
        with path.open("rb") as stream:
            if stream.read(132)[128:] == b"DICM":
                return True
    except OSError:
        return True  # unreadable: tried, and reported with its reason
    header = _header(path)
    return header is not None and ("SOPClassUID" in header or "Rows" in header)


def _header(path: Path) -> Any | None:
    """The DICOM header (no pixels) or ``None`` when it cannot be read (reported later, when reading the image)."""
    if is_itk_file(path):
        return None
    import struct

    from pydicom import dcmread
    from pydicom.errors import BytesLengthException, InvalidDicomError

    try:
        return dcmread(str(path), stop_before_pixels=True, force=True)
    # what pydicom raises for a file that is not DICOM, truncated or garbled (and OSError for an unreadable one)
    except (InvalidDicomError, BytesLengthException, OSError, EOFError, struct.error, ValueError):
        return None


def _instance_name(path: Path, header: Any | None, output: Path, taken: set[str]) -> str:
    """The output folder name of a file: its SOPInstanceUID, else (no UID, or not a plain UID) the file's stem.

    When another file of this run, or the report of an earlier run in ``output``, already owns the name (same UID
    in several files, same stem in several folders), ``__<stem>`` and then ``-2``, ``-3``, ... are added. Inputs
    are sorted, so a rerun gives every file the same name.
    """
    stem = _SAFE_NAME.sub("_", file_stem(path)).strip(".") or "instance"
    uid = str(header.get("SOPInstanceUID", "") or "").strip() if header is not None else ""
    base = uid if _UID.fullmatch(uid) else stem  # a UID names a folder only when it is a plain UID (no "/", "..")
    source = str(path.resolve())
    first = [base, f"{base}__{stem}"] if base != stem else [base]
    for name in itertools.chain(first, (f"{first[-1]}-{k}" for k in range(2, 100_000))):
        owner = _report_source(output / name / _REPORT)
        if name not in taken and (owner is None or owner == source):
            return name
    raise RuntimeError(f"{path}: no free output folder name under {output}")


def _report_source(report: Path) -> str | None:
    """The source file an earlier run's ``report.json`` names; ``None`` when there is none or it is not a report."""
    import json

    try:
        return str(json.loads(report.read_text(encoding="utf-8"))["source_file"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None


def _source_info(path: Path, image: MetaTensor, numbers: list[int]) -> dict[str, Any]:
    """What the report says of the source: its UIDs, size, pixel size and the frames segmented (``numbers``)."""
    meta = image.meta
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")
    return {
        "source_file": str(path.resolve()),
        **{k: meta.get(k) or None for k in keys},  # None: the source has no such attribute
        "number_of_frames": meta["number_of_frames"],
        "frame_numbers": numbers,
        "original_size": list(meta["original_size"]),
        "pixel_size_mm": meta.get("pixel_size_mm"),
        "pixel_size_source": meta.get("pixel_size_source"),
        "ultrasound_region": meta.get("ultrasound_region"),
        "photometric_interpretation": meta.get("photometric_interpretation"),
        "decoder": meta["decoder"],
    }


def _write_instance(
    path: Path,
    segmented: list[tuple[int, MetaTensor, np.ndarray]],
    folder: Path,
    options: SegOptions,
    labels: list,
) -> tuple[str, dict[str, Any]]:
    """Write the outputs of one instance into ``folder``; returns the outcome (processed/fallback) and its report.

    Args:
        path: the source file.
        segmented: ``(frame number, source frame (3, H, W) on 0..255, mask)`` of each segmented frame.
        folder: the (staging) output folder.
        options: SEG descriptions.
        labels: the segment labels.
    """
    masks = [(number, mask) for number, _, mask in segmented]
    frames = [(number, frame) for number, frame, _ in segmented]
    info = _source_info(path, frames[0][1], [number for number, _ in masks])
    spacing = info["pixel_size_mm"]
    stack = np.stack([m for _, m in masks])
    single = int(info["number_of_frames"]) == 1
    report: dict[str, Any] = {**info, "outputs": {}, "segments": []}
    is_dicom = not is_itk_file(path)
    whole = len(masks) == int(info["number_of_frames"])
    seg_note = None
    if is_dicom and whole:
        try:
            source, repairs = prepare_seg_source(dcmread(path))
            write_seg(source, stack[0] if single else stack, folder / "seg.dcm", options, len(labels))
            report["outputs"]["seg"] = "seg.dcm"
            report["seg_repairs"] = repairs  # what the SEG has that the source lacked or had wrong (source untouched)
        except SegUnsupportedError as err:
            seg_note = str(err)
    elif is_dicom:
        seg_note = "only some frames were segmented; a SEG would claim the others are empty"
    else:
        seg_note = "not a DICOM source"
    if options.also_sc or options.also_sr:
        _write_sc_sr(path, segmented, folder, options, labels, spacing, report, single)
    if single:
        write_png_mask(stack[0], folder / "mask.png")
        write_overlay(np.moveaxis(frames[0][1].numpy(), 0, -1), stack[0], folder / "overlay.png")
        report["outputs"].update({"mask_png": "mask.png", "overlay_png": "overlay.png"})
    else:
        per_frame = []
        for (number, frame), (_, mask) in zip(frames, masks, strict=True):
            write_png_mask(mask, folder / f"frame_{number:04d}_mask.png")
            write_overlay(np.moveaxis(frame.numpy(), 0, -1), mask, folder / f"frame_{number:04d}_overlay.png")
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


def _write_sc_sr(
    path: Path,
    segmented: list[tuple[int, MetaTensor, np.ndarray]],
    folder: Path,
    options: SegOptions,
    labels: list,
    spacing: list[float] | None,
    report: dict[str, Any],
    single: bool,
) -> None:
    """Write the Secondary Capture overlays and the SR measurement report asked for in ``options`` into ``folder``.

    What is written is listed in ``report["outputs"]`` (``"sc"``: ``"sc.dcm"``, or the list of ``sc_NNNN.dcm`` of a
    multi-frame source; ``"sr"``: ``"sr.dcm"``); what cannot be, with the reason in ``sc_not_written`` or
    ``sr_not_written``: the SC needs a DICOM source with its study and instance UIDs, the SR also the BINARY SEG it
    references (a LABELMAP frame holds every segment, and a frame reference cannot name one) and the pixel size (no
    measurement in mm without it).
    """
    from segdino_monai.dicom.sc import write_sc
    from segdino_monai.dicom.sr import write_sr

    notes: dict[str, str] = {}
    source = seg_uid = None
    if is_itk_file(path):
        notes = {"sc": "not a DICOM source", "sr": "not a DICOM source"}
    else:
        try:
            source, _ = prepare_seg_source(dcmread(path))
        except SegUnsupportedError as err:
            notes = {"sc": str(err), "sr": str(err)}
    if "seg" in report["outputs"]:
        import pydicom

        seg_uid = str(pydicom.dcmread(folder / "seg.dcm", stop_before_pixels=True).SOPInstanceUID)
    if options.also_sc and source is not None:
        frames = [(None if single else n, np.moveaxis(frame.numpy(), 0, -1), mask) for n, frame, mask in segmented]
        names = write_sc(
            source,
            frames,
            folder,
            seg_uid,
            options.series_number + 1,
            f"{options.series_description} overlay",
            options.manufacturer,
            options.spec().label,
        )
        report["outputs"]["sc"] = names[0] if single else names
    if options.also_sr and source is not None:
        if seg_uid is None:
            notes["sr"] = "no SEG was written for the SR to reference"
        elif options.segmentation_type.upper() != "BINARY":
            notes["sr"] = "the SR references one segment per SEG frame: a BINARY SEG (without --labelmap)"
        elif not spacing:
            notes["sr"] = (
                "the pixel size is unknown (no PixelSpacing, ImagerPixelSpacing or calibrated ultrasound region): "
                "no measurement in mm"
            )
        else:
            masks = [(None if single else n, mask) for n, _, mask in segmented]
            sr_path, description = folder / "sr.dcm", f"{options.series_description} measurements"
            write_sr(source, folder / "seg.dcm", masks, spacing, sr_path, options, len(labels),
                     options.series_number + 2, description)  # fmt: skip
            report["outputs"]["sr"] = "sr.dcm"
    for kind, wanted in (("sc", options.also_sc), ("sr", options.also_sr)):
        if wanted and kind in notes:
            report[f"{kind}_not_written"] = notes[kind]
            logger.warning("%s: no %s written: %s", path, kind.upper(), notes[kind])


def _publish(staging: Path, target: Path) -> None:
    """Move a complete staging folder onto ``target``, replacing an older one (``--overwrite``)."""
    old = None
    if target.exists():
        old = target.parent / f"{_OLD}{os.getpid()}-{target.name}-{time.time_ns()}"
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

    Leftovers of an interrupted earlier run (staging folders, temporary files) are removed first. On Ctrl-C (or a
    SIGTERM turned into ``KeyboardInterrupt``, see :func:`sigterm_as_interrupt`) the instance being written is
    discarded, ``summary.json`` records what was finished and the interruption, and the ``KeyboardInterrupt``
    propagates; a rerun finishes the work.

    Args:
        inputs: DICOM (or NIfTI/MHA/NRRD) files and folders (searched recursively), DICOMDIR files.
        output: the output folder (created); not an input folder nor inside one.
        segmenter: the network and its transforms (:class:`DicomSegmenter`).
        overwrite: redo instances whose outputs exist (default: skip them).
        frames: DICOM frame numbers (from 1) to segment in multi-frame files (default all); a multi-frame file
            without one of them is skipped with the reason; single-frame images are segmented whole.
        seg_options: SEG descriptions; default: the segmenter's modality's task.
        progress: show a progress bar.

    Under ``torchrun`` (``torch.distributed`` initialised) the files are dealt out: process ``r`` segments every
    ``world_size``-th file from its rank, every process names all outputs alike (each output folder has one
    writer), and process 0 writes the one ``summary.json`` of them all; an interrupted process writes its part to
    ``summary-rank<r>.json`` instead (a rerun finishes the work and replaces them by ``summary.json``).

    Returns:
        The :class:`RunSummary` (of every process), also written to ``output/summary.json``.

    Raises:
        InputError: when the whole run cannot proceed: an input is missing, a folder holds nothing to segment, the
            output folder is an input folder, a file or not writable, frame numbers are below 1.
    """
    from tqdm import tqdm

    frames = check_frames(frames)
    output = check_output(output, inputs)
    files = _collect_inputs(inputs, exclude=[output])
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"-o {output}: cannot create it ({err.strerror or err}); choose a writable folder") from err
    _clean_leftovers(output)
    options = seg_options or SegOptions(task=DEFAULT_TASK.get(segmenter.modality, "lesion"))
    if options.model_name == "SegDINO":  # the default: name the backbone and checkpoint
        options.model_name = segmenter.model_name
    options.model_id = options.model_id or segmenter.model_id  # the SEGs' UIDs derive from it (writer.seg_uids)
    labels = options.labels(max(1, segmenter.num_classes - 1))
    summary = RunSummary()
    taken: set[str] = set()
    rank, world = rank_and_world()
    try:
        for index, (path, dicomdir) in enumerate(tqdm(files, desc="segdino dicom", unit="file", disable=not progress)):
            if dicomdir is not None and not path.exists():
                if index % world == rank:
                    reason = f"file not found (referenced by {dicomdir})"
                    summary.skipped.append({"file": str(path), "reason": reason})
                    logger.warning("skipped %s: %s", path, reason)
                continue
            if index % world != rank:  # another process's file: only its output name, as that process chooses it
                taken.add(_instance_name(path, _header(path), output, taken))
                continue
            _run_one(path, output, segmenter, overwrite, frames, options, labels, summary, taken)
    except KeyboardInterrupt as err:
        summary.interrupted = str(err) or "interrupted (Ctrl-C)"
        raise
    finally:
        if summary.interrupted is None:  # every process is done: one summary of them all, written by the first
            summary = _merged(summary, world)
            if rank == 0:
                write_json(summary.as_dict(), output / "summary.json")
                for part in output.glob("summary-rank*.json"):  # of an interrupted run, now finished
                    part.unlink(missing_ok=True)
        else:  # each process records its part; a rerun finishes the work and writes the whole summary
            write_json(summary.as_dict(), output / ("summary.json" if world == 1 else f"summary-rank{rank}.json"))
        if rank == 0 or summary.interrupted is not None:
            _log_summary(summary, output)
    return summary


def _merged(summary: RunSummary, world: int) -> RunSummary:
    """The summaries of every process in one, each list sorted by file (this process's alone outside ``torchrun``)."""
    if world == 1:
        return summary
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, summary)
    merged = RunSummary()
    for kind in ("processed", "fallback", "done", "skipped", "failed"):
        entries = [e for part in parts for e in getattr(part, kind)]
        setattr(merged, kind, sorted(entries, key=lambda e: e["file"]))
    return merged


def _run_one(
    path: Path,
    output: Path,
    segmenter: DicomSegmenter,
    overwrite: bool,
    frames: list[int] | None,
    options: SegOptions,
    labels: list[str],
    summary: RunSummary,
    taken: set[str],
) -> None:
    """Segment one file into ``output/<name>/`` (built in a staging folder, then renamed) and record the outcome."""
    header = _header(path)
    name = _instance_name(path, header, output, taken)
    taken.add(name)
    target = output / name
    entry: dict[str, Any] = {"file": str(path), "output": str(target)}
    if not overwrite and _report_source(target / _REPORT) == str(path.resolve()):
        summary.done.append(entry)
        return
    try:
        numbers = _frames_for(path, header, frames)
        segmented = [(number or 1, *segmenter.segment(path, number)) for number in numbers]
    except Exception as err:  # a file that does not read is skipped with its reason; anything else failed
        reason = input_error_message(err)
        if reason is None:
            summary.failed.append({"file": str(path), "reason": f"{type(err).__name__}: {err}"})
            logger.error("failed %s: %s", path, err)
        else:
            summary.skipped.append({"file": str(path), "reason": reason.removeprefix(f"{path}: ")})
            logger.warning("skipped %s", reason)
        return
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-{name}-", dir=output))
    try:
        outcome, report = _write_instance(path, segmented, staging, options, labels)
        _publish(staging, target)
    except Exception as err:  # on purpose: one file's failure is reported in the summary and the run goes on
        shutil.rmtree(staging, ignore_errors=True)
        summary.failed.append({"file": str(path), "reason": f"{type(err).__name__}: {err}"})
        logger.error("failed %s: %s", path, err)
        return
    except BaseException:  # Ctrl-C, SIGTERM: nothing half-written stays behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entry.update({"SOPInstanceUID": report.get("SOPInstanceUID") or None, "frames": len(segmented)})
    if outcome == "fallback":
        entry["reason"] = report["seg_not_written"]
    if report.get("seg_repairs"):
        entry["seg_repairs"] = report["seg_repairs"]
    getattr(summary, outcome).append(entry)


def _frames_for(path: Path, header: Any | None, frames: list[int] | None) -> list[int | None]:
    """The frames to segment: the chosen ``frames`` (default all) of a multi-frame DICOM file, else ``[None]``.

    Raises:
        DicomReadError: a chosen frame is not in the file.
    """
    if header is None or int(header.get("NumberOfFrames", 1) or 1) == 1:
        return [None]
    return list(frame_numbers(header, frames, path))


def _log_summary(summary: RunSummary, output: Path) -> None:
    counts = summary.as_dict()["counts"]
    logger.info(
        "segdino dicom: %d processed (SEG), %d fallback (no SEG: PNG/NIfTI; frames.json for some frames of a cine), "
        "%d already done, %d skipped, %d failed; summary in %s",
        counts["processed"],
        counts["fallback"],
        counts["done"],
        counts["skipped"],
        counts["failed"],
        output / "summary.json",
    )
    for item in summary.skipped + summary.failed:
        logger.warning("  %s: %s", item["file"], item["reason"])
