"""Stopping a run on Ctrl-C or bad input without a logged traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ignite.engine import Events

from segdino_monai.utils.errors import input_error_message, interrupted

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["QuietStop"]


class QuietStop:
    """Let Ctrl-C and bad input end a run without MONAI's ``StatsHandler`` logging a traceback first.

    ``StatsHandler`` logs every exception of a run with its traceback before re-raising it; Ignite calls only the
    first ``EXCEPTION_RAISED`` handler that raises, so this handler, listed before ``StatsHandler``, re-raises
    Ctrl-C (``KeyboardInterrupt``) and bad input (see :func:`segdino_monai.utils.errors.input_error_message`) silently:
    the command then reports them in one line (``Interrupted.``, exit 130; ``ERROR ...``, exit 2). Any other
    exception is logged with its traceback, as ``StatsHandler`` would, and re-raised.
    """

    def attach(self, engine: Engine) -> None:
        """Register the handler for ``EXCEPTION_RAISED`` (attach before ``StatsHandler``)."""
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)

    def exception_raised(self, engine: Engine, error: BaseException) -> None:
        """Re-raise ``error``; log its traceback first unless it is Ctrl-C or bad input."""
        if not interrupted(error) and input_error_message(error) is None:
            engine.logger.exception("Exception: %s", error)
        raise error
