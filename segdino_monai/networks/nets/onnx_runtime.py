"""An exported SegDINO ONNX file run by ONNX Runtime on the CPU, as a network the bundle's evaluator and inferer call.

``segdino export --format onnx`` writes the whole network (backbone and folded head) with dynamic batch, height and
width. :class:`OnnxRuntimeNetwork` takes the same ``(B, 3, H, W)`` float32 images as :class:`SegDINO` and returns its
logits, so the bundle's ``inference.json`` runs it with the same preprocessing, inferer, postprocessing and writers
(``--onnx_model model.onnx``). The decoder is inside the file: no backbone weights and no ``model.pt`` are read.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from segdino_monai.utils.errors import InputError

__all__ = ["OnnxRuntimeNetwork", "require_modules"]

logger = logging.getLogger(__name__)

#: The metadata keys ``segdino export`` writes into an ONNX file (``metadata_props``).
METADATA_PREFIX = "segdino."


def require_modules(*names: str, purpose: str) -> list[ModuleType]:
    """Import the ``onnx`` extra's modules, or say in one line how to install them.

    Args:
        names: module names (``onnx``, ``onnxruntime``, ``onnxscript``).
        purpose: what needs them, for the error.

    Raises:
        InputError: naming the missing modules and the extra that brings them.
    """
    modules, missing = [], []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise InputError(
            f"{purpose} needs {', '.join(missing)}, which is not installed: pip install 'segdino-monai[onnx]'."
        )
    return modules


class OnnxRuntimeNetwork(nn.Module):
    """A SegDINO ONNX file run by ONNX Runtime's CPU provider: logits ``(B, C, H, W)`` for images ``(B, 3, H, W)``.

    An ``nn.Module`` so that MONAI's evaluator, inferers and ``.to()``/``.eval()`` calls take it; it has no
    parameters. Inputs on any device are run on the CPU and the logits come back on the input's device.

    Args:
        path: the ONNX file written by ``segdino export --format onnx``.
        threads: ONNX Runtime's intra-op threads (``0``: its default, one per core).
        out_channels: the channels the bundle expects (its ``num_classes``); checked against the file's output
            when given.

    Raises:
        InputError: the file is missing or not a loadable ONNX model, its output does not have ``out_channels``,
            or ONNX Runtime is not installed.
    """

    def __init__(self, path: str | Path, threads: int = 0, out_channels: int | None = None) -> None:
        super().__init__()
        (ort,) = require_modules("onnxruntime", purpose="Running an ONNX model (onnx_model)")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(
                f"ONNX model {self.path} not found. Write it with `segdino export --format onnx -o {self.path}`, or "
                "leave onnx_model empty to run the PyTorch network."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        # ONNX Runtime's idle threads spin by default, taking the cores from the PyTorch work around each call
        # (loading, pre- and postprocessing): with spinning, PyTorch beside it ran 5-15x slower on 2 cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... classes, all from RuntimeError
            raise InputError(f"ONNX model {self.path} cannot be loaded by ONNX Runtime: {err}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = {
            k.removeprefix(METADATA_PREFIX): v
            for k, v in self.session.get_modelmeta().custom_metadata_map.items()
            if k.startswith(METADATA_PREFIX)
        }
        channels = self.session.get_outputs()[0].shape[1]
        if out_channels is not None and isinstance(channels, int) and channels != int(out_channels):
            raise InputError(
                f"ONNX model {self.path} gives {channels} output channel(s), the bundle's num_classes is "
                f"{out_channels}. Pass --num_classes {channels} (segdino: --set num_classes={channels})."
            )
        logger.info("ONNX Runtime runs %s on the CPU (%s)", self.path, self.metadata.get("network", "no metadata"))

    @property
    def patch_size(self) -> int:
        """Input height and width must be multiples of this (from the file's metadata; DINOv3's 16 without)."""
        return int(self.metadata.get("patch_size", 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, H, W)`` in float32 on ``x``'s device."""
        image = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run(None, {self.input_name: image})
        return torch.from_numpy(logits).to(x.device)
