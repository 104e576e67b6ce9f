"""Resolving the bundle's paths: bundle root, backbone weights, datalist, images to segment and the last checkpoint.

Bundle configs call these in one-line ``$`` expressions so that every path is an override with a clear error.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from segdino_monai.data.pairing import IMAGE_EXTENSIONS
from segdino_monai.errors import InputError

__all__ = [
    "RANDOM_WEIGHTS",
    "check_output_dir",
    "find_bundle_root",
    "inference_datalist",
    "latest_checkpoint",
    "list_images",
    "resolve_backbone_weights",
    "require_file",
    "resolve_datalist",
]

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random"
_WEIGHTS_HELP = (
    "Get DINOv3 weights from Meta (accept the DINOv3 License on Meta's DINOv3 download page, then download e.g. "
    "dinov3_vits16_pretrain_lvd1689m-08c60483.pth) and place the file at {path}, or pass --backbone_weights "
    "<file>. `segdino check-weights <file>` tells whether a file fits."
)


def find_bundle_root(start: str | Path = ".") -> str:
    """The bundle folder: ``start`` if it holds ``configs/metadata.json``, else ``start/bundle``."""
    start = Path(start).resolve()
    for candidate in (start, start / "bundle"):
        if (candidate / "configs" / "metadata.json").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"No bundle found in {start} or {start / 'bundle'} (looked for configs/metadata.json). Run from the "
        "repository or bundle folder, or pass --bundle_root <folder>."
    )


def resolve_backbone_weights(weights: str | Path | None, allow_random: bool = False) -> str | None:
    """Check the backbone weights file.

    Args:
        weights: the weights file; ``"random"`` asks for a random backbone explicitly.
        allow_random: a missing file gives a random backbone with a loud warning instead of an error (the demo).

    Returns:
        The file's path, or ``None`` for a random backbone.

    Raises:
        FileNotFoundError: naming the file and how to get it, when it is missing and random is not allowed.
    """
    if weights is None or str(weights) == RANDOM_WEIGHTS:
        logger.warning("Using a RANDOM DINOv3 backbone as asked (--backbone_weights random): results are meaningless.")
        return None
    path = Path(weights)
    if path.is_file():
        return str(path)
    if allow_random:
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


def resolve_datalist(
    datalist: str | Path | None, dataset_dir: str | Path | None, modality: str, work_dir: str | Path
) -> str:
    """Find (or make) the datalist JSON to train and evaluate on.

    Args:
        datalist: an explicit datalist JSON; used as is.
        dataset_dir: a dataset folder: its ``datalist.json`` if present, else one prepared from its layout
            (detected) into ``work_dir``.
        modality: the demo dataset's modality when neither is given.
        work_dir: where prepared datalists and the demo dataset go.

    Returns:
        The datalist JSON path.
    """
    if datalist:
        if not Path(datalist).is_file():
            raise FileNotFoundError(f"Datalist not found: {datalist}. Make one with `segdino prepare-data <folder>`.")
        return str(datalist)
    if dataset_dir:
        folder = Path(dataset_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"Dataset folder not found: {folder}")
        if (folder / "datalist.json").is_file():
            return str(folder / "datalist.json")
        from segdino_monai.data.datalist import prepare_datalist

        output = Path(work_dir) / "datalist.json"
        logger.info("No datalist.json in %s: preparing one (layout detected) at %s", folder, output)
        prepare_datalist(folder, output, layout="auto")
        return str(output)
    from segdino_monai.data.demo import make_demo_dataset

    demo_dir = Path(work_dir) / f"demo_{modality}"
    path = demo_dir / "datalist.json"
    if not path.is_file():
        path = make_demo_dataset(demo_dir, modality, num_images=24, size=(256, 256), seed=0)
    logger.warning("No dataset given (--dataset_dir or --datalist): using the generated %s demo dataset in %s",
                   modality, demo_dir)  # fmt: skip
    return str(path)


def list_images(folder: str | Path) -> list[dict[str, str]]:
    """Datalist entries ``{"image": path}`` for every image file directly in a folder (sorted by name).

    Files are images by their extension (:data:`~segdino_monai.data.pairing.IMAGE_EXTENSIONS`, any case); hidden
    files, among them macOS's ``.DS_Store`` and ``._photo.jpg`` AppleDouble files, are ignored (debug log), as
    are other files and sub-folders. Whether an image reads is checked later, image by image.

    Raises:
        InputError: naming the folder, when it is missing, not a folder or holds no image.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"Image folder not found: {folder}. Pass --dataset-dir <folder of images to segment>.")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder: pass the folder that holds the images (--dataset-dir <folder>).")
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as err:
        raise InputError(
            f"Cannot list the image folder {folder} ({err.strerror or err}): check its permissions."
        ) from err
    images, ignored = [], []
    for path in entries:
        if path.name.startswith("."):
            logger.debug("ignoring hidden file %s", path)
        elif path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            logger.debug("ignoring %s: not an image file (%s)", path, ", ".join(IMAGE_EXTENSIONS))
            ignored.append(path)
        else:
            images.append(path)
    if not images:
        others = (
            f" ({len(ignored)} other file(s) or folder(s) ignored; sub-folders are not searched)" if ignored else ""
        )
        raise InputError(
            f"No images to segment in {folder}{others}: it needs files with one of the extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}. Pass --dataset-dir <folder of images>."
        )
    return [{"image": str(p)} for p in images]


def check_output_dir(output_dir: str | Path, image_dir: str | Path | None = None) -> Path:
    """Create the output folder of an inference and check that files can be written there, before any model work.

    Args:
        output_dir: the folder to write the masks into (created with its parents if needed).
        image_dir: the folder of the images; the output folder may not be it (the masks would be read as images
            on the next run).

    Returns:
        The output folder.

    Raises:
        InputError: naming the folder and what to do, when it is the image folder or cannot be created or written.
    """
    output = Path(output_dir)
    if image_dir and output.resolve() == Path(image_dir).resolve():
        raise InputError(
            f"The output folder {output} is the image folder: the masks written there would be taken for images on "
            "the next run. Pass another --output-dir (a sub-folder is fine)."
        )
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InputError(
            f"Cannot write to the output folder {output} ({reason}): pass a writable --output-dir, or fix the "
            "folder's permissions."
        ) from err
    return output


def latest_checkpoint(ckpt_dir: str | Path, required: bool = False, prefix: str = "last") -> str:
    """The training checkpoint with the highest epoch number written by the ``last`` CheckpointSaver.

    Args:
        ckpt_dir: the checkpoint folder.
        required: raise when there is none (resuming); otherwise return ``""``.
        prefix: the file prefix of the checkpoints.

    Raises:
        FileNotFoundError: when ``required`` and no checkpoint exists.
    """
    candidates = list(Path(ckpt_dir).glob(f"{prefix}*.pt"))
    if not candidates:
        if required:
            raise FileNotFoundError(
                f"Cannot resume: no {prefix}*.pt training checkpoint in {ckpt_dir}. Train without --resume first, "
                "or pass the --ckpt_dir of the run to continue."
            )
        return ""

    def epoch(path: Path) -> int:
        found = re.findall(r"(\d+)", path.stem)
        return int(found[-1]) if found else -1

    return str(max(candidates, key=epoch))


def require_file(path: str | Path, what: str, hint: str) -> str:
    """Return ``path`` if it is a file, else raise a ``FileNotFoundError`` naming it, what it is and what to do."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path}. {hint}")
    return str(path)


def inference_datalist(
    image_dir: str | Path | None, modality: str, work_dir: str | Path, output_dir: str | Path | None = None
) -> list[dict[str, str]]:
    """Images to segment: every image in ``image_dir``, or the demo dataset's test images when none is given.

    Each entry carries its output name (:func:`~segdino_monai.transforms.post.with_output_names`), so that images
    sharing a stem (``a.jpg``, ``a.png``) get distinct output files.

    Args:
        image_dir: the folder of images (see :func:`list_images`); empty for the demo dataset.
        modality: the demo dataset's modality.
        work_dir: where the demo dataset goes.
        output_dir: the folder the masks go to, checked first (see :func:`check_output_dir`).
    """
    from segdino_monai.transforms.post import with_output_names

    if image_dir:
        images = list_images(image_dir)  # bad input first: nothing is created for a wrong folder
        if output_dir:
            check_output_dir(output_dir, image_dir)
        return with_output_names(images)
    if output_dir:
        check_output_dir(output_dir)
    from monai.data import load_decathlon_datalist

    demo = resolve_datalist(None, None, modality, work_dir)
    return with_output_names([{"image": item["image"]} for item in load_decathlon_datalist(demo, data_list_key="test")])
