"""Which DINOv3 weights the backbone loads: a file, a hub name, or random weights (tests, demos) when allowed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from segdino_monai.utils.options import as_bool

__all__ = ["RANDOM_WEIGHTS", "resolve_backbone_weights"]

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"


_WEIGHTS_HELP = (
    "Get DINOv3 weights from Meta (accept the DINOv3 License on Meta's DINOv3 download page, then download e.g. "
    "dinov3_vits16_pretrain_lvd1689m-08c60483.pth) and place the file at {path}, or pass --backbone_weights "
    "<file>; a Hugging Face snapshot folder (facebook/dinov3-vits16-pretrain-lvd1689m: config.json and "
    "model.safetensors) works too. `segdino check-weights <file>` tells whether a file fits."
)


def resolve_backbone_weights(weights: str | Path | None, allow_random: Any = False) -> str | None:
    """Check the backbone weights file (a bundle config calls it as the network's ``weights`` component).

    Args:
        weights: the weights file or Hugging Face snapshot folder; ``"random"`` asks for a random backbone explicitly.
        allow_random: a missing file gives a random backbone with a loud warning instead of an error (the demo);
            a bool or an on/off option as typed (see :func:`~segdino_monai.utils.options.as_bool`).

    Returns:
        The path, or ``None`` for a random backbone.

    Raises:
        FileNotFoundError: naming the file and how to get it, when it is missing and random is not allowed.
    """
    if weights is None or str(weights) == RANDOM_WEIGHTS:
        logger.warning("Using a RANDOM DINOv3 backbone as asked (--backbone_weights random): results are meaningless.")
        return None
    path = Path(weights)
    if path.is_file() or path.is_dir():  # a folder: a Hugging Face snapshot, checked by the backbone
        return str(path)
    if as_bool(allow_random, "demo"):
        logger.warning(
            "\n%s\nDINOv3 weights not found at %s: the demo runs on a RANDOM backbone, so its numbers only show that "
            "the pipeline works.\n%s\n%s",
            "!" * 100, path, _WEIGHTS_HELP.format(path=path), "!" * 100,
        )  # fmt: skip
        return None
    raise FileNotFoundError(
        f"DINOv3 backbone weights not found: {path}. {_WEIGHTS_HELP.format(path=path)} "
        "--backbone_weights random trains on a random backbone (for tests only)."
    )
