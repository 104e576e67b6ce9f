"""Reading weight and checkpoint files safely, with one clear message for each way a file can be wrong.

``torch.load(weights_only=True)`` rightly refuses pickled Python objects, but its message advises re-running with
``weights_only=False``: advice that must never reach a user about a file that failed the safe load (unpickling runs
code). Here every failure becomes an :class:`~segdino_monai.utils.errors.InputError` that names the file, says what is
wrong with it (missing, a folder, empty, truncated or not a weights file, holds Python objects) and what to do.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from segdino_monai.utils.errors import InputError

__all__ = ["safe_load"]


def safe_load(path: str | Path, what: str, hint: str) -> Any:
    """Load a ``.pt``/``.pth`` file with ``torch.load(weights_only=True)``, or a ``.safetensors`` file, on the CPU.

    Args:
        path: the file.
        what: what the file should be, for messages (``"DINOv3 weights file"``, ``"Decoder checkpoint"``).
        hint: what to do instead, appended to every message.

    Returns:
        What the file holds (a state dict, or a dict of them).

    Raises:
        InputError: naming the file and the reason; its cause is the library's own error.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}. {hint}")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file. {hint}")
    if path.stat().st_size == 0:
        raise InputError(f"{what} {path} is empty (0 bytes): an interrupted download or copy? {hint}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it is about to refuse anyway
            warnings.simplefilter("ignore")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path), device="cpu")
            return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as err:
        raise InputError(f"{what} {path} cannot be read: permission denied. {hint}") from err
    except Exception as err:  # torch, zipfile and safetensors raise many types for a corrupt or foreign file
        raise InputError(f"{what} {path} {_why(err)}. {hint}") from err


def _why(error: Exception) -> str:
    text = str(error)
    if found := re.search(r"\bGLOBAL ([\w.]+)", text):
        return (
            f"holds pickled Python objects ({found[1]}), which are never unpickled here because unpickling can run "
            "code; save the tensors alone (torch.save(model.state_dict(), file)) and pass that file"
        )
    return "cannot be read as tensors: it is truncated, corrupt, or not a PyTorch/safetensors weights file"
