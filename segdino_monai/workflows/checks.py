"""Checks of a bundle config's options and paths: spatial size, class names, modality, checkpoints, required files.

Bundle configs call these in one-line ``$`` expressions so that every bad option or path is a clear error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segdino_monai.transforms.spatial import PATCH_SIZE
from segdino_monai.utils.errors import InputError

__all__ = [
    "check_class_names",
    "check_modality",
    "check_spatial_size",
    "latest_checkpoint",
    "require_file",
]

logger = logging.getLogger(__name__)


def check_spatial_size(value: Any, name: str = "spatial_size") -> list[int]:
    """``value`` as ``[height, width]``: two positive multiples of the patch size (16), or an error naming ``name``.

    Raises:
        InputError: for anything else (``[250, 250]``, ``[0, 256]``, ``"abc"``, three numbers).
    """
    sides = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if (
        sides is None
        or len(sides) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 and s % PATCH_SIZE == 0 for s in sides)
    ):
        raise InputError(
            f"Option {name} must be two positive multiples of {PATCH_SIZE} (height, width), e.g. [256, 256], got "
            f'{value!r}. On the command line: --{name} "[256,256]" (segdino: --spatial-size 256 256).'
        )
    return sides


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> None:
    """``class_names``, when given, names each foreground class in order: ``num_classes - 1`` names (1 for binary).

    Raises:
        InputError: naming both options, for a count that does not fit or a name that is not text.
    """
    if class_names is None:
        return
    expected = max(1, int(num_classes) - 1)
    if isinstance(class_names, str) or not all(isinstance(n, str) and n.strip() for n in class_names):
        raise InputError(
            f"class_names must be a list of names, e.g. --class_names \"['benign','malignant']\"; got {class_names!r}"
        )
    if len(class_names) != expected:
        raise InputError(
            f"class_names has {len(class_names)} names but num_classes {num_classes} has {expected} foreground "
            f"class(es): give one name per class, in class order (class 1 first)"
        )


def check_modality(modality: str, preprocessing_modality: str) -> None:
    """The run's ``modality`` must be the one whose pipeline steps the configs hold (its ``<modality>.json``).

    Each modality's clean-ups and augmentations live in ``configs/<modality>.json``, merged after the task's config;
    ``--modality ultrasound`` alone would label endoscopy's steps "ultrasound".

    Raises:
        InputError: naming the config file to add.
    """
    if modality != preprocessing_modality:
        raise InputError(
            f"modality {modality!r}, but the pipeline steps are {preprocessing_modality}'s: a modality's steps are in "
            f"configs/{modality}.json; add it after the task's config, e.g. --config_file "
            f"\"['configs/train.json','configs/{modality}.json']\" (segdino: --modality {modality})."
        )


def latest_checkpoint(ckpt_dir: str | Path, required: bool = False, prefix: str = "last") -> str:
    """The newest training checkpoint ``<prefix>_checkpoint_epoch=N.pt`` in a folder (the one to resume from).

    Newest means last written (modification time), not highest epoch: a fresh run's epoch 2 is newer than the epoch
    10 of the run before it. Equal times fall back to the epoch number.

    Args:
        ckpt_dir: the checkpoint folder.
        required: raise when there is none (resuming); otherwise return ``""``.
        prefix: the file prefix of the checkpoints.

    Raises:
        InputError: when ``required`` and no checkpoint exists.
    """
    candidates = [p for p in Path(ckpt_dir).glob(f"{prefix}_checkpoint*.pt") if p.is_file()]
    if not candidates:
        if required:
            raise InputError(
                f"Cannot resume (resume=true): no {prefix}_checkpoint_epoch=N.pt training checkpoint in {ckpt_dir}. "
                "Train without --resume first, or pass the --ckpt_dir of the run to continue."
            )
        return ""

    def newness(path: Path) -> tuple[int, int]:
        found = re.findall(r"(\d+)", path.stem)
        return path.stat().st_mtime_ns, int(found[-1]) if found else -1

    return str(max(candidates, key=newness))


def require_file(path: str | Path, what: str, hint: str) -> str:
    """Return ``path`` if it is a file, else raise a ``FileNotFoundError`` naming it, what it is and what to do."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path}. {hint}")
    return str(path)
