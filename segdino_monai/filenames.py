"""File names with compound extensions: ``case.nii.gz`` has the stem ``case`` and the suffix ``.nii.gz``.

``pathlib`` sees only the last extension (``Path("case.nii.gz").stem == "case.nii"``); every place that names an
output after its source, or writes through a temporary file that must keep the format's extension, uses these two.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["COMPOUND_SUFFIXES", "file_stem", "file_suffix"]

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
