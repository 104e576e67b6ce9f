"""segdino-monai: SegDINO-style segmentation (frozen DINOv3, feature aligner, tiny MLP decoder) for MONAI."""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.5.0"

# sub-packages, and the modules bundle configs call first (``segdino_monai.errors.install_excepthook()``)
_SUBPACKAGES = (
    "configs",
    "data",
    "dicom",
    "engines",
    "handlers",
    "inferers",
    "networks",
    "reporting",
    "transforms",
    "errors",
    "options",
    "uncertainty",
)


def __getattr__(name: str) -> ModuleType:
    """Import sub-packages on first use.

    ``import segdino_monai`` stays light, and bundle ``$`` expressions can write
    ``segdino_monai.engines.find_bundle_root()`` after a plain ``$import segdino_monai``.
    """
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
