"""The outputs of one segmented video, streamed frame by frame: overlay video, CSV, optional PNG or FFV1 masks.

Every file is written under a temporary name and renamed when complete (:meth:`VideoOutputs.close`), so a rerun
overwrites whole files only; :meth:`VideoOutputs.discard` removes them on an interruption.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from segdino_monai.io.masks import segment_areas
from segdino_monai.io.overlay import overlay
from segdino_monai.io.writers import mask_png, write_png_mask

__all__ = ["CSV_COLUMNS", "VideoOutputs"]

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("frame", "time_s", "area_pixels", "area_mm2", "mean_probability", "mask_empty")


class VideoOutputs:
    """The streaming writers of one video, each on a temporary name until :meth:`close` renames them."""

    def __init__(self, folder: Path, size: tuple[int, int], rate: Fraction, masks: str | None) -> None:
        import av

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.masks = folder, masks
        self.final: dict[str, Path] = {"overlay": folder / "overlay.mp4", "csv": folder / "frames.csv"}
        if masks == "video":
            self.final["mask_video"] = folder / "masks.mkv"
        self.temp = {key: _temp_name(path) for key, path in self.final.items()}
        # PNG masks go to a temporary folder that replaces masks/ whole (a rerun leaves no mask of an earlier run)
        self.png_dir = Path(tempfile.mkdtemp(prefix=".masks.", dir=folder)) if masks == "png" else None
        height, width = size
        self.containers: dict[str, Any] = {}
        self.streams: dict[str, Any] = {}
        # yuv420p, the format players expect, halves the chroma and needs an even size; yuv444p keeps odd sizes
        pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        for key, codec, fmt in (("overlay", "libx264", pix_fmt), ("mask_video", "ffv1", "gray")):
            if key not in self.final:
                continue
            container = av.open(str(self.temp[key]), "w", format="mp4" if key == "overlay" else "matroska")
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, fmt
            self.containers[key], self.streams[key] = container, stream
        self.csv_file = self.temp["csv"].open("w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.csv_file)
        self.csv.writerow(CSV_COLUMNS)

    def write(
        self,
        number: int,
        seconds: float,
        rgb: np.ndarray,
        mask: np.ndarray,
        probability: float,
        pixel_size_mm: Sequence[float] | None = None,
    ) -> None:
        """Encode and record one segmented frame (the area in mm2 where ``pixel_size_mm``, (row, column), is known)."""
        import av

        picture = av.VideoFrame.from_ndarray(overlay(rgb, mask), format="rgb24")
        self._encode("overlay", picture)
        if self.masks == "video":
            self._encode("mask_video", av.VideoFrame.from_ndarray(np.asarray(mask_png(mask)), format="gray"))
        elif self.png_dir is not None:
            write_png_mask(mask, self.png_dir / f"frame_{number:06d}.png")
        (foreground,) = segment_areas((mask > 0).astype(np.uint8), ["foreground"], pixel_size_mm)
        area, mm2 = foreground["area_pixels"], foreground["area_mm2"]
        self.csv.writerow([number, f"{seconds:.6f}", area, "" if mm2 is None else f"{mm2:.4f}", f"{probability:.6f}",
                           int(area == 0)])  # fmt: skip

    def _encode(self, key: str, frame: Any) -> None:
        for packet in self.streams[key].encode(frame):
            self.containers[key].mux(packet)

    def close(self) -> dict[str, str]:
        """Flush the encoders, close the files and rename them to their final names."""
        for key, container in self.containers.items():
            for packet in self.streams[key].encode(None):
                container.mux(packet)
            container.close()
        self.csv_file.close()
        for key, path in self.final.items():
            os.replace(self.temp[key], path)
        outputs = {key: path.name for key, path in self.final.items()}
        if self.png_dir is not None:
            masks = self.folder / "masks"
            old = Path(tempfile.mkdtemp(prefix=".masks-old.", dir=self.folder))
            if masks.exists():
                os.replace(masks, old / "masks")
            os.replace(self.png_dir, masks)
            shutil.rmtree(old, ignore_errors=True)
            outputs["masks_png"] = "masks"
        return outputs

    def discard(self) -> None:
        """Close and remove the temporary files (an interrupted run)."""
        for container in self.containers.values():
            try:
                container.close()
            except Exception:  # on purpose: the file is removed anyway
                logger.debug("closing a discarded video failed", exc_info=True)
        self.csv_file.close()
        for path in self.temp.values():
            path.unlink(missing_ok=True)
        if self.png_dir is not None:
            shutil.rmtree(self.png_dir, ignore_errors=True)


def _temp_name(path: Path) -> Path:
    """A temporary file beside ``path``, named as :func:`~segdino_monai.utils.atomic.atomic_write` names its own.

    The streams here are written frame by frame over the whole run, which ``atomic_write``'s one callback does not fit.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(name)
