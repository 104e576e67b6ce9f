"""Run the bundle's workflows (train, evaluate, infer) from plain options, as ``python -m monai.bundle run`` would."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from segdino_monai.engines.resolve import find_bundle_root

__all__ = ["PRESETS", "TASKS", "bundle_workflow", "run_bundle"]

logger = logging.getLogger(__name__)

# task -> (config files, workflow type, run id)
TASKS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "train": (("train.json",), "train", "training"),
    "evaluate": (("train.json", "evaluate.json"), "train", "evaluating"),
    "infer": (("inference.json",), "infer", "inference"),
}
# preset -> config files merged after the task's own; presets other than "default" apply to train and evaluate
PRESETS: dict[str, tuple[str, ...]] = {"default": (), "paper": ("paper.json",)}


def bundle_workflow(
    task: str, bundle_root: str | Path | None = None, *, preset: str = "default", **overrides: Any
) -> ConfigWorkflow:
    """Build (not yet initialise) the bundle workflow of a task with config overrides.

    Args:
        task: ``train``, ``evaluate`` or ``infer``.
        bundle_root: the bundle folder; default: found from the working directory.
        preset: ``default``, or ``paper`` (train and evaluate): ``configs/paper.json`` merged last, the SegDINO
            paper's protocol.
        overrides: config ids and values, e.g. ``dataset_dir="/data/kvasir"``, ``**{"train#trainer#max_epochs": 5}``;
            ``None`` values are left out. They apply after every config file, the preset's included.

    Raises:
        ValueError: for an unknown task or preset, or a preset the task has no use for.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if PRESETS[preset] and task not in ("train", "evaluate"):
        raise ValueError(f"the {preset!r} preset applies to train and evaluate, not to {task}")
    root = Path(bundle_root) if bundle_root else Path(find_bundle_root())
    files, workflow_type, run_id = TASKS[task]
    configs = root / "configs"
    return ConfigWorkflow(
        config_file=[str(configs / f) for f in (*files, *PRESETS[preset])],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        run_id=run_id,
        bundle_root=str(root),
        **{k: v for k, v in overrides.items() if v is not None},
    )


def run_bundle(
    task: str,
    bundle_root: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    preset: str = "default",
) -> int:
    """Initialise, run and finalise a bundle workflow (see :func:`bundle_workflow`).

    Returns:
        The exit status: 0, or 1 when the run finished but skipped some inputs (logged, see
        :class:`~segdino_monai.engines.inference.ImagesSkipped`).
    """
    from segdino_monai.engines.inference import ImagesSkipped

    workflow = bundle_workflow(task, bundle_root, preset=preset, **dict(overrides or {}))
    workflow.initialize()
    try:
        workflow.run()
    except ImagesSkipped:
        workflow.finalize()
        return 1
    workflow.finalize()
    return 0
