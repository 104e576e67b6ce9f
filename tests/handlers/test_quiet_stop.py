"""QuietStop: Ctrl-C and bad input stop a run without a logged traceback; a bug keeps its traceback."""

from __future__ import annotations

import logging

import pytest
from ignite.engine import Engine, Events

from segdino_monai.handlers import QuietStop
from segdino_monai.utils.errors import InputError


def _failing_run(error: BaseException, caplog) -> str:
    engine = Engine(lambda engine, batch: None)

    def fail(_engine):
        raise error

    engine.add_event_handler(Events.ITERATION_COMPLETED, fail)
    QuietStop().attach(engine)
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(type(error)):
        engine.run([0, 1], max_epochs=1)
    return "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records if r.exc_info)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), InputError("Datalist x.json: no")], ids=["ctrl-c", "input"])
def test_quiet_stop_raises_ctrl_c_and_bad_input_without_a_logged_traceback(error, caplog):
    assert _failing_run(error, caplog) == ""


def test_quiet_stop_still_logs_a_bug_with_its_traceback(caplog):
    assert "Exception: a bug" in _failing_run(RuntimeError("a bug"), caplog)
