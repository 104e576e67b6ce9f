"""Outputs that appear whole: staging folders, their publication, the leftovers of interrupted runs, SIGTERM.

An instance's outputs are built in a hidden ``.partial-<pid>-...`` folder of the output folder, then renamed
(:func:`publish`); the next run removes the staging folders of runs that are gone (Ctrl-C, SIGTERM, SIGKILL:
:func:`clean_leftovers`), so a rerun finishes the work. :func:`sigterm_as_interrupt` turns SIGTERM into a
``KeyboardInterrupt`` so the same cleanup runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["STAGING_PREFIX", "Terminated", "clean_leftovers", "publish", "sigterm_as_interrupt", "staging_folder"]

logger = logging.getLogger(__name__)

#: the name prefix of a folder being built (``.partial-<pid>-<name>-...``).
STAGING_PREFIX = ".partial-"
_OLD = ".old-"


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled like Ctrl-C (the instance being written is discarded, the summary is written)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) as Ctrl-C would.

    Python's default for SIGTERM is to die at once, leaving staging folders behind and no summary; with this, the
    cleanup of :func:`~segdino_monai.services.dicom_batch.run_dicom` runs. Only the main thread can set signal
    handlers: elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def clean_leftovers(output: Path) -> list[str]:
    """Remove the staging folders and temporary files that an interrupted run left in ``output``.

    A staging folder ``.partial-<pid>-...`` (and a replaced folder ``.old-<pid>-...``) belongs to a run that is
    over when its process is gone (Ctrl-C, SIGTERM, SIGKILL, power cut) or is this process; a folder of a run that
    is still going (another process writing into the same output) is left alone. Temporary files of the summary are
    removed too.
    """
    removed = []
    for child in output.iterdir():
        name = child.name
        if child.is_dir() and name.startswith((STAGING_PREFIX, _OLD)):
            pid = name.split("-")[1] if name.count("-") >= 2 else ""
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            shutil.rmtree(child, ignore_errors=True)
            removed.append(name)
        elif child.is_file() and name.startswith(".summary.json."):
            child.unlink(missing_ok=True)
            removed.append(name)
    if removed:
        logger.info("removed %d leftover(s) of an interrupted run in %s: %s", len(removed), output, removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def publish(staging: Path, target: Path) -> None:
    """Move a complete staging folder onto ``target``, replacing an older one (``--overwrite``)."""
    old = None
    if target.exists():
        old = target.parent / f"{_OLD}{os.getpid()}-{target.name}-{time.time_ns()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_folder(output: Path, name: str) -> Path:
    """A new hidden staging folder in ``output`` for the outputs of ``name``, owned by this process."""
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-{name}-", dir=output))
