"""An Ignite handler writing one per-image metrics CSV, a summary JSON and the HTML report after an evaluation.

MONAI's ``MetricsSaver`` writes one CSV per metric and no JSON; a single table with a row per image (Dice, IoU,
HD95 side by side) and a machine-readable summary are what evaluation reports need, hence this small handler.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import torch
from ignite.engine import Events
from monai.utils import string_list_all_gather

from segdino_monai.reporting import RunFolder, summarise, write_report
from segdino_monai.reporting.uncertainty import uncertainty_correlations
from segdino_monai.utils.atomic import atomic_write, write_json
from segdino_monai.utils.errors import InputError

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SegmentationReport"]

logger = logging.getLogger(__name__)


class SegmentationReport:
    """Write the per-image metrics CSV, the summary JSON and the report page when an evaluation completes.

    The files are ``<output_dir>/metrics_per_image.csv``, ``metrics_summary.json`` and ``report.html`` with its
    markdown twin (see :class:`segdino_monai.reporting.RunFolder` and :func:`segdino_monai.reporting.write_report`).

    It reads the per-image values that MONAI's metric handlers keep (``engine.state.metric_details``, so the
    metric handlers need ``save_details=True``, their default) and the image file names from the batch meta data.
    Each metric's column is the mean over the classes scored (NaN classes left out); with more than one class
    (multi-class models score the foreground classes), each class also gets its own column,
    ``<metric>_<class name>``, in the CSV, the summary and the report.

    Args:
        output_dir: the folder to write into (created if needed).
        predictions_dir: the folder the evaluation writes its masks into (default ``<output_dir>/predictions``); the
            report shows each case from there.
        image_key: the batch key whose meta data holds the file name.
        context: what was evaluated (model, weights, split, ...), stored in the summary and shown in the report.
        html_report: also write the report page.
        num_cases: worst and best cases shown in the report.
        class_names: the names of the classes scored, in order (class 1, 2, ...: a multi-class metric's channels);
            default ``class1``, ``class2``, ...
    """

    def __init__(
        self,
        output_dir: str | Path,
        predictions_dir: str | Path | None = None,
        image_key: str = "image",
        context: Mapping[str, Any] | None = None,
        html_report: bool = True,
        num_cases: int = 4,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.run_folder = RunFolder(output_dir, predictions_dir)
        self.image_key = image_key
        self.context = {str(k): v if isinstance(v, (int, float, bool)) else str(v) for k, v in (context or {}).items()}
        self.html_report = html_report
        self.num_cases = num_cases
        self.class_names = [_column_name(n) for n in class_names] if class_names else None
        self._filenames: list[str] = []

    def _names(self, array: torch.Tensor) -> list[str]:
        """The class names of an ``(N, C)`` buffer's channels."""
        count = int(array.shape[1])
        if self.class_names is not None and len(self.class_names) != count:
            raise InputError(
                f"class_names has {len(self.class_names)} names ({', '.join(self.class_names)}) but the metrics score "
                f"{count} classes: give one name per foreground class, in class order"
            )
        return self.class_names or [f"class{i}" for i in range(1, count + 1)]

    def attach(self, engine: Engine) -> None:
        """Register with an evaluator."""
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._filenames.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_filenames)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect_filenames(self, engine: Engine) -> None:
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        for item in items:
            names = getattr(item[self.image_key], "meta", {}).get("filename_or_obj", "")
            self._filenames.extend([names] if isinstance(names, str) else [str(n) for n in names])

    def _write(self, engine: Engine) -> None:
        filenames = string_list_all_gather(self._filenames)
        if idist.get_rank() != 0:
            return
        details: dict[str, list[float]] = {}
        per_class: dict[str, list[float]] = {}
        classes: list[str] = []
        for name, value in (engine.state.metric_details or {}).items():
            array = _per_image_per_class(value)
            details[name] = [float(torch.nanmean(row)) for row in array]
            if array.shape[1] > 1:
                classes = self._names(array)
                per_class.update({f"{name}_{c}": array[:, i].tolist() for i, c in enumerate(classes)})
        details.update(per_class)
        if not details:
            logger.warning("No per-image metric values to report (metric handlers need save_details=True)")
            return
        for name, values in details.items():
            if len(values) != len(filenames):
                raise RuntimeError(f"metric {name} has {len(values)} per-image values for {len(filenames)} images")
        # each image once: a distributed sampler that pads the last batch repeats images (multi_gpu_evaluate.json
        # uses MONAI's, which does not, with even_divisible false); a repeat would count an image twice
        seen: set[str] = set()
        first = [i for i, name in enumerate(filenames) if not (name in seen or seen.add(name))]
        if len(first) < len(filenames):
            logger.info("%d repeated image(s) of a padded last batch counted once", len(filenames) - len(first))
            filenames = [filenames[i] for i in first]
            details = {name: [values[i] for i in first] for name, values in details.items()}
        rows = len(filenames)

        def write_csv(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["filename", *details])
                for i, filename in enumerate(filenames):
                    writer.writerow([filename, *(_fmt(values[i]) for values in details.values())])

        correlations = {c.uncertainty: c.as_dict() for c in uncertainty_correlations(details)}
        summary = {
            "num_images": rows,
            "context": self.context,
            **({"classes": classes} if classes else {}),
            "metrics": {name: summarise(values) for name, values in details.items()},
            **({"uncertainty_vs_dice": correlations} if correlations else {}),
            "engine_metrics": {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float))},
        }
        atomic_write(self.run_folder.metrics_csv, write_csv)
        write_json(summary, self.run_folder.summary_json, newline=False, default=None)
        means = ", ".join(f"{k} {_fmt(v['mean'])}" for k, v in summary["metrics"].items())
        logger.info("Evaluation on %d images: %s (per image: %s)", rows, means, self.run_folder.metrics_csv)
        if self.html_report:
            write_report(self.run_folder.root, self.run_folder.predictions, num_cases=self.num_cases)


def _per_image_per_class(value: Any) -> torch.Tensor:
    """A metric's per-image, per-class buffer as an ``(N, C)`` float64 tensor."""
    return torch.as_tensor(value, dtype=torch.float64).reshape(len(value), -1)


def _column_name(name: str) -> str:
    """A class name as a CSV column suffix: no spaces, commas or underscores (the suffix follows the last ``_``)."""
    return "-".join(str(name).replace("_", " ").replace(",", " ").split()) or "class"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.6f}"
