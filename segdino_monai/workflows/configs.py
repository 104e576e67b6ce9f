"""The bundle's config files: where the bundle is, which files a run merges, and the pipelines they define.

:func:`get_transforms` gives Python users the bundle's (train, eval) pipelines, built from the configs: never a
second copy.

The pipelines are defined once, as ``_target_`` lists in the bundle configs: ``configs/train.json`` (and
``inference.json``) hold the loader, the steps that bring an image to the model input and the normalisation, with
the endoscopy clean-ups and augmentations as the default; ``configs/ultrasound.json``, ``endoscopy.json`` and
``dermoscopy.json`` replace the modality's ``cleanup``, ``after_resize`` and ``augmentation`` lists, and
``configs/paper.json`` the whole pipeline by the SegDINO paper's (no clean-up, no augmentation, Pillow bicubic
resize). A step is changed from JSON or with ``--id#path value`` (``--cleanup#1#_disabled_ true`` turns the
endoscopy border crop off; ``--mask_threshold 100``); :func:`get_transforms` takes the same overrides.

Each pipeline loads the image (any supported file as 8-bit RGB, channel-first), the mask (train and validation),
shrinks images larger than a working size of ``WORK_SIZE_FACTOR`` times ``spatial_size`` (4 x 256 = 1024 pixels;
invertibly), does the modality's clean-ups, resizes to ``spatial_size`` (``None``, the native-size mode: keeps the
size and pads to a multiple of the patch size), augments (train only), normalises with the DINOv3 (ImageNet)
statistics, and returns ``image`` float32 ``(3, H, W)`` and ``label`` ``(1, H, W)`` class indices. The eval pipeline
is deterministic; every spatial step is invertible with ``monai.transforms.Invertd``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.transforms import Compose

from segdino_monai.utils.errors import InputError
from segdino_monai.utils.options import MODALITIES

__all__ = [
    "MODALITIES",
    "PROTOCOLS",
    "WORK_SIZE_FACTOR",
    "bundle_config_files",
    "find_bundle_root",
    "get_transforms",
]

#: images are shrunk first to at most this many times the longest side of ``spatial_size`` (256 -> 1024).
WORK_SIZE_FACTOR = 4
PROTOCOLS = ("default", "paper")


def find_bundle_root(start: str | Path = ".") -> str:
    """The bundle folder: ``start`` if it holds ``configs/metadata.json``, else ``start/bundle``."""
    start = Path(start).resolve()
    for candidate in (start, start / "bundle"):
        if (candidate / "configs" / "metadata.json").is_file():
            return str(candidate)
    raise InputError(
        f"No bundle found in {start} or {start / 'bundle'} (looked for configs/metadata.json). Run from the "
        "repository or bundle folder, or pass --bundle_root <folder>."
    )


def _bundle_root(bundle_root: str | Path | None) -> Path:
    """The given bundle folder, else the one found from the working directory, else this checkout's."""
    if bundle_root is not None:
        return Path(bundle_root)
    try:
        return Path(find_bundle_root())
    except InputError:
        checkout = Path(__file__).resolve().parents[1] / "bundle"
        if (checkout / "configs" / "metadata.json").is_file():
            return checkout
        raise


def bundle_config_files(
    base: Sequence[str], modality: str | None, protocol: str = "default", bundle_root: str | Path | None = None
) -> list[Path]:
    """The config files of a run: the task's own, then the modality's, then the protocol's (``paper.json``).

    Args:
        base: the task's config file names, e.g. ``("train.json", "evaluate.json")``.
        modality: ``"ultrasound"``, ``"endoscopy"`` or ``"dermoscopy"``; ``None`` keeps the configs' default.
        protocol: ``"default"``, or ``"paper"`` (train and evaluate only).
        bundle_root: the bundle folder (see :func:`get_transforms`).

    Raises:
        InputError: for an unknown modality or protocol.
    """
    if modality is not None and modality not in MODALITIES:
        raise InputError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r}")
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    configs = _bundle_root(bundle_root) / "configs"
    names = [*base, *([f"{modality}.json"] if modality else []), *(["paper.json"] if protocol == "paper" else [])]
    return [configs / name for name in names]


def get_transforms(
    modality: str = "endoscopy",
    protocol: str = "default",
    spatial_size: Sequence[int] | None = (256, 256),
    with_label: bool = True,
    overrides: Mapping[str, Any] | None = None,
    bundle_root: str | Path | None = None,
) -> tuple[Compose, Compose]:
    """The (train, eval) pipelines of a modality, or of the paper's protocol, as the bundle configs define them.

    Args:
        modality: ``"ultrasound"``, ``"endoscopy"`` or ``"dermoscopy"``.
        protocol: ``"default"``, the modality's pipelines; ``"paper"``, the paper's, whatever the modality.
        spatial_size: model input ``(height, width)``; ``None`` keeps the size (padded to a multiple of 16; not with
            the paper's protocol).
        with_label: load and transform the ``label`` too; ``False`` for images alone.
        overrides: config ids and values, e.g. ``{"cleanup#1#_disabled_": True, "mask_threshold": 100}``.
        bundle_root: the bundle folder; default: found from the working directory, else this checkout's.

    Returns:
        ``(train, eval)`` composed transforms.

    Raises:
        InputError: for an unknown modality or protocol, or native size with the paper's protocol.
    """
    if spatial_size is None and protocol == "paper":
        raise InputError("the paper protocol resizes to a fixed spatial_size; native-size inputs are not part of it")
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_config_files(["train.json"], modality, protocol, bundle_root)])
    settings: dict[str, Any] = {"spatial_size": list(spatial_size) if spatial_size is not None else None}
    if spatial_size is None:
        settings.update(work_size=None, model_size=[-1, -1])
    if not with_label:
        settings["load"] = ["@load_image", "@ensure_rgb"]
    for key, value in {**settings, **dict(overrides or {})}.items():
        parser[key] = value
    return parser.get_parsed_content("train#preprocessing"), parser.get_parsed_content("validate#preprocessing")
