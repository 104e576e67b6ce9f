"""segdino-monai: SegDINO-style segmentation (frozen DINOv3, feature aligner, tiny MLP decoder) for MONAI."""

from __future__ import annotations

__version__ = "0.1.0"
