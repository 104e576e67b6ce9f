"""Atomic file writing: write a temporary file beside the target, then move it into place with ``os.replace``.

Every output of the package (checkpoints, datalists, masks, overlays, NIfTI, reports, feature-cache files, DICOM SEG)
goes through :func:`atomic_write`, so an interrupted or failed write never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from segdino_monai.utils.naming import file_suffix

__all__ = ["atomic_write", "remove_leftovers", "write_json"]

logger = logging.getLogger(__name__)

_DEFAULT: Any = object()  # write_json's default: _json_default


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it onto ``path`` (``os.replace``).

    The temporary name keeps the target's extension (``.nii.gz`` included) for writers that choose the format by it.

    Args:
        path: the file to write; its folder is created if needed.
        write: writes the content to the path it is given.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{file_suffix(path)}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    logger.debug("wrote %s", path)
    return path


def remove_leftovers(folder: str | Path, name: str = "*") -> list[Path]:
    """Remove the temporary files that killed :func:`atomic_write` calls left in ``folder`` (of ``name``: all).

    Only safe where no other writer is at work in ``folder`` on the same names.

    Returns:
        the files removed.
    """
    leftovers = [p for p in Path(folder).glob(f".{name}.*.tmp*") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def write_json(
    data: Any,
    path: str | Path,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    newline: bool = True,
    default: Callable[[Any], Any] | None = _DEFAULT,
) -> Path:
    """Write ``data`` as JSON, atomically: the package's one JSON writer.

    The text is made before any file is touched, so data that cannot be written leaves nothing behind.

    Args:
        data: what to write.
        path: the file; its folder is created if needed.
        indent: ``json.dumps``'s indent.
        sort_keys: sort the keys of every object.
        newline: end the file with a newline.
        default: turns values JSON has no type for into ones it has; default: NumPy scalars and arrays as numbers
            and lists, anything else as its ``str``. ``None``: none, such a value raises ``TypeError`` (before any
            file is touched).

    Returns:
        ``path``.
    """
    if default is _DEFAULT:
        default = _json_default
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=default)
    if newline:
        text += "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
