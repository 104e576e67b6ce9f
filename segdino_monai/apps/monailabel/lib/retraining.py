"""Automatic retraining: after every N new final labels, a training of the served model is queued.

A *new final label* is a save that leaves an image's final label file different from the one seen last (a new file
or a newer modification time): a label saved for the first time or corrected. Saves of other tags do not count.
"""

from __future__ import annotations

import logging
import os
import threading

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

__all__ = ["RetrainCounter"]

logger = logging.getLogger(__name__)

FINAL = DefaultLabelTag.FINAL.value


class RetrainCounter:
    """Counts new final labels and says when ``every`` of them have come since the last retraining.

    Args:
        every: new final labels per retraining (0: never).
        datastore: the app's datastore; the final labels already in it are the starting point.
    """

    def __init__(self, every: int, datastore: Datastore) -> None:
        if every < 0:
            raise ValueError(f"retrain_every must be >= 0 (0: off), got {every}")
        self.every = every
        self.pending = 0
        self._lock = threading.Lock()
        self._seen = {image: self._stamp(datastore, image) for image in datastore.get_labeled_images(FINAL)}

    @staticmethod
    def _stamp(datastore: Datastore, image: str) -> int | None:
        label = datastore.get_label_by_image_id(image, FINAL)
        uri = datastore.get_label_uri(label, FINAL) if label else None
        return os.stat(uri).st_mtime_ns if uri and os.path.isfile(uri) else None

    def label_saved(self, datastore: Datastore, image: str) -> bool:
        """Record a saved label of ``image``; True when a retraining is due (the count starts again)."""
        if not self.every:
            return False
        stamp = self._stamp(datastore, image)
        with self._lock:
            if stamp is None or self._seen.get(image) == stamp:
                return False  # not a final label, or the same final label as before
            self._seen[image] = stamp
            self.pending += 1
            logger.info("new final label of %s: %d of %d before retraining", image, self.pending, self.every)
            if self.pending < self.every:
                return False
            self.pending = 0
            return True
