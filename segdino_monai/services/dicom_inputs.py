"""The inputs of a DICOM batch run: files and folders searched, DICOMDIRs resolved, the output folder checked.

Also how an instance's output folder is named (its SOPInstanceUID, else the file's stem, made unique) and how an
earlier run's finished folder is recognised (its ``report.json`` names the source file). A run that cannot proceed at
all (a missing input, a folder with nothing to segment, an output folder inside an input folder) raises
:class:`~segdino_monai.utils.errors.InputError` before writing anything.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from segdino_monai.io.dicom_reader import is_dicom_file, is_itk_file
from segdino_monai.utils.errors import InputError
from segdino_monai.utils.naming import file_stem

__all__ = [
    "REPORT",
    "check_frames",
    "check_output",
    "collect_inputs",
    "dicom_header",
    "find_inputs",
    "instance_name",
    "report_source",
]

#: files never tried as images when a folder is searched (sidecars and notes).
_IGNORED_SUFFIXES = {".json", ".txt", ".md", ".csv", ".xml", ".html", ".log", ".py", ".sh"}
#: an instance's report, written last into its folder: its presence marks the folder as complete.
REPORT = "report.json"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_SAFE_NAME = re.compile(r"[^0-9A-Za-z._+-]")


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
    return [path for path, _ in collect_inputs(inputs, exclude)]


def collect_inputs(inputs: Sequence[str | Path], exclude: Iterable[str | Path] = ()) -> list[tuple[Path, str | None]]:
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


def _is_image_file(path: Path) -> bool:
    """Whether a file may be an image for the bundle's reader (DICOM or a 2D ITK file).

    True for a NIfTI/MHA/NRRD name, a DICOM preamble, or a DICOM data set without preamble (old ACR-NEMA style)
    with image attributes.
    """
    if is_itk_file(path) or is_dicom_file(path):
        return True
    if not os.access(path, os.R_OK):
        return True  # unreadable: tried, and reported with its reason
    header = dicom_header(path)
    return header is not None and ("SOPClassUID" in header or "Rows" in header)


def dicom_header(path: Path) -> Any | None:
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


def instance_name(path: Path, header: Any | None, output: Path, taken: set[str]) -> str:
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
        owner = report_source(output / name / REPORT)
        if name not in taken and (owner is None or owner == source):
            return name
    raise RuntimeError(f"{path}: no free output folder name under {output}")


def report_source(report: Path) -> str | None:
    """The source file an earlier run's ``report.json`` names; ``None`` when there is none or it is not a report."""
    import json

    try:
        return str(json.loads(report.read_text(encoding="utf-8"))["source_file"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None
