"""The bundle's files in MONAI's experiment tracking (``python -m monai.bundle run ... --tracking mlflow``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler

__all__ = ["track_files"]

logger = logging.getLogger(__name__)


def _executed_config(path: str | Path) -> str | Path:
    """The file MONAI saved the executed config into, from the path its tracking settings give the handler.

    MONAI 1.6 builds that path by string concatenation, ``parser["output_dir"] + " + '/config_<time>.json'"``: right
    when ``output_dir`` is an expression (the config's default), but a literal ``/x/eval + '/config_<time>.json'``
    when ``output_dir`` was given as a plain path (``--output_dir /x/eval``, the ``segdino`` command). MONAI saved the
    file to the right place either way; this mends the path it passes on.
    """
    head, sep, tail = str(path).rpartition(" + '")
    if sep and tail.endswith("'") and not os.path.exists(path):
        return os.path.join(head, tail[:-1].lstrip("/"))
    return path


def track_files(engine: Engine, handlers: Sequence, files: Sequence[str | Path] = (), close: bool = False) -> Engine:
    """Have MONAI's tracking handlers among ``handlers`` log ``files`` as artifacts when ``engine`` completes.

    ``--tracking mlflow`` appends an ``MLFlowHandler`` to the bundle's handler lists; its settings log only the
    executed config. This adds the bundle's own results (the best model of a training, the report of an
    evaluation), which exist by then: the handlers that write them come first in the lists. Without tracking there
    is no such handler and this does nothing.

    Args:
        engine: the trainer or evaluator the handlers are attached to.
        handlers: its handlers (the config's handler list).
        files: files or folders to log when the engine completes; those missing then are left out.
        close: also end the MLflow run when the engine completes (MONAI's settings leave a validator's run open,
            as a training's validator shares the trainer's run, but ``evaluate.json``'s evaluator has its own).

    Returns:
        ``engine``, so that a config can call ``track_files(@evaluator, ...).run()``.
    """
    for handler in handlers:
        if not isinstance(handler, MLFlowHandler):
            continue
        handler.artifacts = (*(_executed_config(a) for a in handler.artifacts if a), *files)
        logger.info("MLflow: will log %s", ", ".join(str(a) for a in handler.artifacts))
        if close and not engine.has_event_handler(handler.close, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, handler.close)
    return engine
