"""Inference: the bundle's own pre/post-processing, a PNG class-index mask at the image's original size."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from lib.configs import load_bundle_config
from monai.transforms import SaveImaged
from monailabel.tasks.infer.bundle import BundleInferTask
from PIL import Image

from segdino_monai.transforms import SaveSegmentationd, one_thread
from segdino_monai.utils.errors import InputError, input_error_message

__all__ = ["BadImageError", "SegDINOInfer"]

logger = logging.getLogger(__name__)


class BadImageError(InputError):
    """The input image could not be read or pre-processed (the request's fault, not the server's).

    Args:
        name: the image file's name.
        reason: the first line of the underlying error.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Cannot read or pre-process image {name}: {reason}")
        self.name = name
        self.reason = reason


class SegDINOInfer(BundleInferTask):
    """The bundle's inference as a MONAI Label task.

    Differences from ``BundleInferTask``: the served copy's ``configs/monailabel.json`` overrides are merged; the
    bundle's file writer (``SaveSegmentationd``) is left out; MONAI Label's ``Restored`` is not appended, because
    the bundle's post-processing already inverts its pre-processing to the original size (``Restored`` would
    read the PIL reader's (W, H) spatial shape as (H, W)); the decoder loads strictly; the result is always a
    ``(H, W)`` uint8 PNG of class indices (0 background, 1 foreground), written in the file's row order.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(
            path,
            conf,
            post_filter=[SaveImaged, SaveSegmentationd],
            add_post_restore=False,
            load_strict=True,
            **kwargs,
        )
        if self.is_valid():
            self.labels = _mask_labels(self.labels, self.bundle_config)

    def _load_bundle_config(self, path, config):
        return load_bundle_config(path, config, self.const.key_bundle_root())

    def run_pre_transforms(self, data: dict[str, Any], transforms: Sequence[Callable]) -> dict[str, Any]:
        """Run the pre-processing; bad input (an upload that cannot be read) raises :class:`BadImageError`.

        Only what :func:`~segdino_monai.utils.errors.input_error_message` calls bad input becomes a ``BadImageError``
        (the request's fault); any other failure is a bug and propagates as it is (the server's fault).

        The bundle's pre-processing reads the upload with the package's image reader
        (:mod:`segdino_monai.io.images`): TIFF, 16-bit, palette and CMYK uploads give the same RGB as training
        saw, and a file over the pixel limit (``SEGDINO_MAX_IMAGE_PIXELS``) is refused from its header. The steps
        run on one intra-op thread, as everywhere else (:class:`~segdino_monai.transforms.OneThreadCompose`): the
        same input tensor, so the same mask as ``segdino dicom`` and ``monai.bundle run inference`` in bfloat16.
        """
        try:
            with one_thread():  # as the bundle's OneThreadCompose runs them (MONAI Label unwraps that Compose)
                return super().run_pre_transforms(data, transforms)
        except Exception as err:
            message = input_error_message(err)  # our own one-line message (bad file, too large) when there is one
            if message is None:
                raise  # not the upload's fault: a bug, reported by the server as such
            path = str(data.get("image_path") or data.get("image"))
            name = os.path.basename(path)
            reason = message.replace(path, name).strip().splitlines()  # without the server's temp folder
            raise BadImageError(name, (reason or [type(err).__name__])[0]) from err

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[str, dict[str, Any]]:
        """Write ``pred`` ((1, H, W) class indices) as an 8-bit PNG; returns its path and the result JSON."""
        pred = data[self.output_label_key]
        mask = np.asarray(torch.as_tensor(pred).detach().cpu()).astype(np.uint8)
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.ndim != 2:
            raise ValueError(f"Expected a (1, H, W) class-index mask, got shape {tuple(mask.shape)}")
        fd, path = tempfile.mkstemp(suffix=".png", prefix="segdino_")
        os.close(fd)
        Image.fromarray(mask).save(path, format="PNG")
        return path, {"shape": list(mask.shape), "classes": sorted(int(v) for v in np.unique(mask))}


def _mask_labels(labels: dict[str, int], config: Any) -> dict[str, int]:
    """Label values in the returned mask: a one-channel (sigmoid) output writes its class as 1, not channel 0."""
    if int(config.get_parsed_content("num_classes")) == 1 and len(labels) == 1:
        return {name: 1 for name in labels}
    return labels
