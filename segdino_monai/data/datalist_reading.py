"""Reading a bundle datalist: the configured datalist, the demo data set, an image folder, split checks."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segdino_monai.data.pairing import IMAGE_EXTENSIONS
from segdino_monai.utils.errors import InputError

__all__ = [
    "Datalist",
    "check_output_dir",
    "check_splits",
    "inference_datalist",
    "list_images",
    "load_datalist",
    "resolve_datalist",
]

logger = logging.getLogger(__name__)


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
            what = "is a folder, not a file" if Path(datalist).is_dir() else "not found"
            raise InputError(
                f"Datalist {datalist} {what}: pass --datalist <JSON file>; make one with "
                "`segdino prepare-data <dataset folder> -o <file>`."
            )
        return str(datalist)
    if dataset_dir:
        folder = Path(dataset_dir)
        if not folder.is_dir():
            raise InputError(f"Dataset folder not found: {folder}. Pass --dataset_dir <an existing folder>.")
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


class Datalist:
    """The run's datalist: found or made (:func:`resolve_datalist`) when a list is first read, not before.

    A bundle config declares it as a component; creating it does nothing, so parsing a config (``ckpt_export``,
    ``verify_metadata``, reading one id) never generates the demo dataset or writes a datalist.

    Args:
        datalist: an explicit datalist JSON.
        dataset_dir: a dataset folder.
        modality: the demo dataset's modality when neither is given.
        work_dir: where prepared datalists and the demo dataset go.
    """

    def __init__(
        self, datalist: str | Path | None, dataset_dir: str | Path | None, modality: str, work_dir: str | Path
    ) -> None:
        self.source = (datalist, dataset_dir, modality, work_dir)
        self._path: str | None = None

    @property
    def path(self) -> str:
        """The datalist JSON (resolved on first use)."""
        if self._path is None:
            self._path = resolve_datalist(*self.source)
        return self._path

    def load(self, key: str, purpose: str = "training") -> list[dict[str, Any]]:
        """One list of the datalist, checked (see :func:`load_datalist`)."""
        return load_datalist(self.path, key, purpose)


_SPLIT_HINTS = {
    "training": "nothing to train on: add image/label pairs to it (`segdino prepare-data <dataset folder> -o {path}` "
    "writes a complete datalist)",
    "validation": "training picks model.pt by the validation Dice, so it needs validation pairs: add some (`segdino "
    "prepare-data --val-fraction 0.1`), or pass --val_split <another list of the datalist>",
    "evaluation": "nothing to evaluate: choose a list that has pairs (--split, config id eval_split) or add pairs",
}


def load_datalist(path: str | Path, key: str, purpose: str = "training") -> list[dict[str, Any]]:
    """Read one list of a datalist JSON, checked: the entries ``load_decathlon_datalist`` gives, with absolute paths.

    MONAI's reader raises a bare ``KeyError`` or ``JSONDecodeError`` and accepts entries whose files do not exist;
    this checks everything a run needs before it starts, and names the datalist, the list and what to do.

    Args:
        path: the datalist JSON (relative paths in it are relative to its folder).
        key: the list to read, e.g. ``training``, ``validation`` or ``test``.
        purpose: ``training``, ``validation`` or ``evaluation``: what the list is for, in the messages.

    Returns:
        The list's entries ``{"image": path, "label": path or [paths], ...}``.

    Raises:
        InputError: the file is unreadable or not JSON, the list is missing, empty or not a list, an entry lacks
            ``image`` or ``label``, or files it names do not exist.
    """
    from monai.data import load_decathlon_datalist

    path = Path(path)
    fix = f"Fix it, or write a new one with `segdino prepare-data <dataset folder> -o {path}`."
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(
            f"Datalist {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}). {fix}"
        ) from err
    except UnicodeDecodeError as err:
        raise InputError(f"Datalist {path} is not a text (JSON) file. {fix}") from err
    except OSError as err:
        raise InputError(
            f"Datalist {path} cannot be read ({err.strerror or err}). Pass --datalist <JSON file>."
        ) from err
    if not isinstance(content, dict):
        raise InputError(f"Datalist {path} must be a JSON object of lists (training, validation, test). {fix}")
    lists = sorted(k for k, v in content.items() if isinstance(v, list))
    if key not in content:
        raise InputError(
            f"Datalist {path} has no {key!r} list (its lists: {', '.join(lists) or 'none'}). Add it, or choose "
            f"one of its lists (val_split / eval_split). {fix}"
        )
    entries = content[key]
    if not isinstance(entries, list):
        raise InputError(f"Datalist {path}: {key!r} must be a list of {{'image': ..., 'label': ...}} entries. {fix}")
    if not entries:
        hint = _SPLIT_HINTS.get(purpose, _SPLIT_HINTS["evaluation"]).format(path=path)
        raise InputError(f"Datalist {path}: the {key!r} list is empty; {hint}.")
    for index, entry in enumerate(entries):
        lacking = [k for k in ("image", "label") if not isinstance(entry, dict) or not entry.get(k)]
        if lacking:
            raise InputError(
                f"Datalist {path}: entry {index} of {key!r} ({json.dumps(entry)[:120]}) has no "
                f"{' and no '.join(repr(k) for k in lacking)}; every entry needs an image and its label mask. {fix}"
            )
    data = load_decathlon_datalist(path, data_list_key=key)
    missing = [p for item in data for k in ("image", "label") for p in _as_paths(item[k]) if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InputError(
            f"Datalist {path}: {len(missing)} file(s) of the {key!r} list do not exist: {shown}. Paths are relative "
            f"to the datalist's folder; fix them, or run `segdino prepare-data` again on the dataset folder."
        )
    return data


def check_splits(splits: Mapping[str, Sequence[Any]]) -> None:
    """Stop before training when a list it needs is empty (data given directly, e.g. by MONAI Label's request).

    Datalist files are checked by :func:`load_datalist` with their names; this covers lists passed as data. Training
    without validation images would run to the end and write no ``model.pt`` (it is kept by the validation Dice).

    Args:
        splits: the lists by name, e.g. ``{"training": [...], "validation": [...]}``.

    Raises:
        InputError: naming the first empty list.
    """
    for name, data in splits.items():
        if len(data) == 0:
            raise InputError(
                f"The {name!r} list of this training run is empty: training needs training images and validation "
                "images (model.pt is the best validation Dice). Label or add more images (MONAI Label: a val_split "
                "that leaves validation images), or pass a datalist whose lists are not empty."
            )


def _as_paths(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def list_images(folder: str | Path) -> list[dict[str, str]]:
    """Datalist entries ``{"image": path}`` for every image file directly in a folder (sorted by name).

    Files are images by their extension (:data:`~segdino_monai.data.pairing.IMAGE_EXTENSIONS`, any case), or files
    the package's reader takes for DICOM or 2D ITK images (``.dcm``, ``.nii.gz``, ``.mha``, ..., and DICOM files of
    any name that start with the DICM marker, as PACS exports write them); hidden
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
    from segdino_monai.io.dicom_reader import DicomReader

    images, ignored = [], []
    for path in entries:
        if path.name.startswith("."):
            logger.debug("ignoring hidden file %s", path)
        elif not path.is_file() or (path.suffix.lower() not in IMAGE_EXTENSIONS and not DicomReader.claims(path)):
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


def inference_datalist(
    image_dir: str | Path | None, modality: str, work_dir: str | Path, output_dir: str | Path | None = None
) -> list[dict[str, str]]:
    """Images to segment: every image in ``image_dir``, or the demo dataset's test images when none is given.

    Each entry carries its output name (:func:`~segdino_monai.utils.naming.with_output_names`), so that images
    sharing a stem (``a.jpg``, ``a.png``) get distinct output files.

    Args:
        image_dir: the folder of images (see :func:`list_images`); empty for the demo dataset.
        modality: the demo dataset's modality.
        work_dir: where the demo dataset goes.
        output_dir: the folder the masks go to, checked first (see :func:`check_output_dir`).
    """
    from segdino_monai.utils.naming import with_output_names

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
