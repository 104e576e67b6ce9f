"""Per-image scores from the current model, computed in a background thread and cached until the model changes.

The ``uncertainty`` active learning strategy ranks the unlabelled images by a score that needs the model to run on
each of them: too slow for one request. :class:`BackgroundScores` computes the missing scores one image at a time in a
background thread; a score is kept with the model version it was computed with (the served ``model.pt``'s
modification time) and the image file's size and modification time, and is current only while both still match.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterable

__all__ = ["BackgroundScores"]

logger = logging.getLogger(__name__)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class BackgroundScores:
    """Scores of image files by the current model; missing or outdated ones computed in a background thread.

    Args:
        score: computes one image file's score with the current model.
        version: the current model's version; scores computed with another version are outdated.
    """

    def __init__(self, score: Callable[[str], float], version: Callable[[], Hashable]) -> None:
        self._score = score
        self._version = version
        self._scores: dict[str, tuple[Hashable, tuple[int, int] | None, float]] = {}
        self._todo: list[str] = []
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.computed = 0  # scores computed so far (for tests and logs)

    def _current(self, path: str, version: Hashable) -> float | None:
        entry = self._scores.get(path)
        if entry is None or entry[0] != version or entry[1] != _stamp(path):
            return None
        return entry[2]

    def update(self, paths: Iterable[str]) -> int:
        """Schedule the images without a current score (the others' scores stay); returns how many are pending."""
        version = self._version()
        with self._lock:
            queued = set(self._todo)
            self._todo.extend(p for p in paths if p not in queued and self._current(p, version) is None)
            pending = len(self._todo)
            if pending and (self._worker is None or not self._worker.is_alive()):
                self._worker = threading.Thread(target=self._run, name="background-scores", daemon=True)
                self._worker.start()
        return pending

    def ranking(self, paths: Iterable[str]) -> list[tuple[str, float]]:
        """The images of ``paths`` that have a current score, highest first (ties: in the given order)."""
        version = self._version()
        with self._lock:
            scored = [(p, self._current(p, version)) for p in paths]
        return sorted(((p, s) for p, s in scored if s is not None), key=lambda item: -item[1])

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the pending scores; True when none is left."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not (worker is not None and worker.is_alive())

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._todo:
                    return
                path = self._todo[0]
            version, stamp = self._version(), _stamp(path)
            try:
                value = float(self._score(path))
            except Exception:  # one bad image must not stop the others; it gets no score
                logger.exception("scoring %s failed", path)
                value = None
            with self._lock:
                self._todo.remove(path)
                if value is not None:
                    self._scores[path] = (version, stamp, value)
                    self.computed += 1
