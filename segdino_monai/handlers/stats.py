"""MONAI's ``StatsHandler`` that leaves bad input to the command's one-line report instead of logging a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monai.handlers import StatsHandler as MonaiStatsHandler

from segdino_monai.errors import input_error_message

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["StatsHandler"]


class StatsHandler(MonaiStatsHandler):
    """``monai.handlers.StatsHandler`` whose exception handler logs no traceback for bad input.

    MONAI's handler logs every exception raised in a run with its traceback before re-raising it. For bad input
    (:class:`~segdino_monai.errors.InputError`, a missing file, ...) the ``segdino`` command and
    ``python -m monai.bundle run`` print one line naming the file and exit with status 2; a traceback logged first
    would bury that line. Other exceptions are bugs and are logged as MONAI does. Takes MONAI's arguments.
    """

    def exception_raised(self, _engine: Engine, e: Exception) -> None:
        """Re-raise bad input untouched; log anything else with its traceback first (MONAI's behaviour)."""
        if input_error_message(e) is not None:
            raise e
        super().exception_raised(_engine, e)
