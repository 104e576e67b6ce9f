from __future__ import annotations

from segdino_monai.data.masks import LoadMask, LoadMaskd

__all__ = ["LoadMask", "LoadMaskd"]
