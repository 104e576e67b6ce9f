"""Inference on a folder of real files: a bad image is reported and skipped, the others are segmented.

A folder from a user holds what cameras, scanners and file managers leave there: truncated JPEGs, empty files,
text files with an image extension. One of them must not end a run over hundreds of good images. The pieces:

- :class:`SkippingDataset` checks each image (:func:`~segdino_monai.data.validation.check_image`: complete data,
  not only a readable header) and runs the pre-processing; a failure becomes a marker instead of an exception.
- :func:`skipping_collate` keeps the markers out of the model's batch.
- :class:`InferenceSummary` is the evaluator's ``iteration_update``: it logs each skipped file as one line with its
  reason, also skips a batch whose model or post-processing step fails, runs the rest, and at the end
  (:meth:`InferenceSummary.finish`) writes ``summary.json`` and ends the run with :class:`ImagesSkipped`
  (exit status 1) when a file was skipped, as ``segdino dicom`` does.

MONAI's engines stop at the first exception and its datasets have no per-item error handling, hence this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai.data import Dataset, list_data_collate
from monai.utils import min_version, optional_import

from segdino_monai.data.validation import check_image
from segdino_monai.utils.atomic import write_json
from segdino_monai.utils.distributed import rank_and_world
from segdino_monai.utils.errors import InputError
from segdino_monai.utils.naming import OUTPUT_NAME_KEY

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["SKIPPED_KEY", "ImagesSkipped", "InferenceSummary", "SkippingDataset", "failure_reason", "skipping_collate"]

logger = logging.getLogger(__name__)

#: The key of the marker that replaces a sample which could not be loaded: ``{SKIPPED_KEY: {"file", "reason"}}``.
SKIPPED_KEY = "skipped_input"


class ImagesSkipped(SystemExit):
    """The run finished, but some images were skipped: exit status 1, without a traceback (the reasons are logged).

    A ``SystemExit``, so that ``python -m monai.bundle run inference`` ends with status 1 as well; the ``segdino``
    command returns 1 (see :func:`segdino_monai.workflows.runner.run_bundle`).

    Args:
        message: the summary line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


def failure_reason(error: BaseException, source: str | Path | None = None) -> str:
    """One line saying why an image failed: our own bad-input message if there is one, else the root cause's.

    MONAI wraps transform errors in ``RuntimeError("applying transform ...")``; the root cause says what is wrong.

    Args:
        error: the exception.
        source: the file, left out of the start of the message (the log line names it already).
    """
    chain = [error]
    while chain[-1].__cause__ is not None and chain[-1].__cause__ not in chain:
        chain.append(chain[-1].__cause__)
    own = next((e for e in chain if isinstance(e, InputError)), None)
    cause = own or chain[-1]
    text = " ".join(str(cause).split()) or type(cause).__name__
    if source is not None:
        text = text.removeprefix(f"{source}: ")
    return text if own is not None else f"{type(cause).__name__}: {text}"


class SkippingDataset(Dataset):
    """A :class:`monai.data.Dataset` whose items that fail to load become skip markers instead of exceptions.

    Args:
        data: the datalist.
        transform: the pre-processing.
        image_key: the key of the image path in each entry.
        check: check the image file first with :func:`~segdino_monai.data.validation.check_image` (a truncated
            JPEG decodes without error in some readers; this check reads the whole file).
    """

    def __init__(
        self,
        data: Sequence[Mapping[Hashable, Any]],
        transform: Sequence[Callable] | Callable | None = None,
        image_key: str = "image",
        check: bool = True,
    ) -> None:
        super().__init__(data, transform)
        self.image_key = image_key
        self.check = check

    def _transform(self, index: int) -> Any:
        source = str(self.data[index][self.image_key])
        try:
            if self.check:
                check_image(Path(source))
        except ValueError as err:  # its message says what is wrong with the file and what to do
            return {SKIPPED_KEY: {"file": source, "reason": " ".join(str(err).split()).removeprefix(f"{source}: ")}}
        try:
            return super()._transform(index)
        except Exception as err:  # any failure on one file skips that file; Ctrl-C still stops the run
            logger.debug("cannot load %s", source, exc_info=True)
            return {SKIPPED_KEY: {"file": source, "reason": failure_reason(err, source)}}


def skipping_collate(batch: Sequence[Any]) -> dict[Hashable, Any]:
    """MONAI's ``list_data_collate`` of the loaded samples, with the skip markers under :data:`SKIPPED_KEY`."""
    skipped = [item[SKIPPED_KEY] for item in batch if isinstance(item, Mapping) and SKIPPED_KEY in item]
    loaded = [item for item in batch if not (isinstance(item, Mapping) and SKIPPED_KEY in item)]
    collated: dict[Hashable, Any] = dict(list_data_collate(loaded)) if loaded else {}
    collated[SKIPPED_KEY] = skipped
    return collated


class InferenceSummary:
    """The evaluator's ``iteration_update`` that skips bad images, and the run's ``summary.json``.

    Use an instance as ``iteration_update`` of a :class:`monai.engines.SupervisedEvaluator` whose data loader
    yields batches of :func:`skipping_collate`, then call :meth:`finish` after the run. A failing model or
    post-processing step skips every file of its batch (one file with the bundle's batch size of 1).

    Args:
        output_dir: the folder of the masks, where ``summary.json`` goes.
        image_key: the batch key whose meta data names the source files.
        name_key: the batch key of the output names (see :func:`~segdino_monai.utils.naming.with_output_names`).
    """

    file_name = "summary.json"
    #: A model or post-processing step that fails this many times before any success is not about one file (a wrong
    #: configuration, a broken device): the run stops with that error instead of skipping every image.
    max_failures_before_any_success = 3

    def __init__(self, output_dir: str | Path, image_key: str = "image", name_key: str = OUTPUT_NAME_KEY) -> None:
        self.output_dir = Path(output_dir)
        self.image_key = image_key
        self.name_key = name_key
        self.segmented: list[dict[str, str]] = []
        self.skipped: list[dict[str, str]] = []
        self._failed_steps = 0

    def __call__(self, engine: Engine, batch: Any) -> Any:
        """One iteration: record the skipped files of the batch, then run the model on the others (if any)."""
        markers = batch.pop(SKIPPED_KEY, []) if isinstance(batch, dict) else []
        for marker in markers:
            self._skip(marker["file"], marker["reason"])
        if isinstance(batch, dict) and self.image_key not in batch:
            return {}
        sources = _filenames(batch, self.image_key)
        names = batch.get(self.name_key, [None] * len(sources)) if isinstance(batch, dict) else [None] * len(sources)
        try:
            output = engine._iteration(engine, batch)  # noqa: SLF001 - the evaluator's own step, on the good samples
        except Exception as err:  # a failure in the model or post-processing step skips the batch's files
            logger.debug("processing failed for %s", sources, exc_info=True)
            for source in sources:
                self._skip(source, failure_reason(err, source))
            self._failed_steps += 1
            if not self.segmented and self._failed_steps >= self.max_failures_before_any_success:
                logger.error(
                    "The model step failed on the first %d batches: not a problem of one file", self._failed_steps
                )
                raise
            return {}
        for source, name in zip(sources, names, strict=False):
            self.segmented.append({"file": source, "output": str(name) if name is not None else Path(source).stem})
        return output

    def _skip(self, source: str, reason: str) -> None:
        logger.error("Skipped %s: %s", source, reason)
        self.skipped.append({"file": source, "reason": reason})

    def finish(self) -> dict[str, Any]:
        """Write ``summary.json`` (atomically), log the outcome, and raise :class:`ImagesSkipped` if any was skipped.

        Under ``torch.distributed`` (``multi_gpu_inference.json``) every process calls it: the records of all
        processes are merged (each file once, sorted by path, as one process lists a folder), process 0 writes the
        one ``summary.json``, and every process ends with the same outcome. The record is then cleared, for a next
        run of the same workflow.

        Returns:
            The summary, when nothing was skipped.
        """
        segmented, skipped = _merged_across_processes(self.segmented, self.skipped)
        total = len(segmented) + len(skipped)
        summary = {
            "counts": {"images": total, "segmented": len(segmented), "skipped": len(skipped)},
            "segmented": segmented,
            "skipped": skipped,
        }
        self.segmented, self.skipped, self._failed_steps = [], [], 0
        path = self.output_dir / self.file_name
        if rank_and_world()[0] == 0:
            write_json(summary, path, newline=False, default=None)
        line = f"{summary['counts']['segmented']} of {total} images segmented into {self.output_dir}"
        if not summary["skipped"]:
            logger.info("%s (%s)", line, path.name)
            return summary
        names = [Path(item["file"]).name for item in summary["skipped"]]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        line += f"; {len(names)} skipped: {shown} (reasons above and in {path})"
        logger.error("%s", line)
        raise ImagesSkipped(line)


def _merged_across_processes(
    segmented: list[dict[str, str]], skipped: list[dict[str, str]]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The records of every process (each file once, sorted by path); this process's alone outside DDP."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return segmented, skipped
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (segmented, skipped))

    def unique(records: list[dict[str, str]]) -> list[dict[str, str]]:
        once = {r["file"]: r for r in reversed(records)}
        if len(once) < len(records):  # a sampler that pads (not multi_gpu_inference.json's) gave a file twice
            logger.warning("%d image(s) were handled by more than one process", len(records) - len(once))
        return sorted(once.values(), key=lambda r: r["file"])

    return unique([r for part in gathered for r in part[0]]), unique([r for part in gathered for r in part[1]])


def _filenames(batch: Mapping[Hashable, Any], image_key: str) -> list[str]:
    names = getattr(batch.get(image_key), "meta", {}).get("filename_or_obj", [])
    return [names] if isinstance(names, str) else [str(n) for n in names]
