"""The bundle's preprocessing ``Compose``, run on one intra-op thread wherever it runs (bit-identical inputs).

PyTorch's CPU ``interpolate`` (bilinear, the config's ``Resized``) gives results that differ in the last bit between
one intra-op thread and several. A ``DataLoader`` worker runs on one thread (PyTorch sets it), so
``monai.bundle run inference`` with its default ``num_workers`` preprocessed on one thread, while ``segdino dicom``,
``segdino video``, MONAI Label and the bundle with ``num_workers 0`` preprocessed on all of them. In float32 that
last bit never shows in a mask; with the backbone in bfloat16 (``backbone_precision: auto`` on a CPU with native
bf16) it does: the input's bf16 rounding flips and the ViT carries the difference to the logits (about 1e-4),
enough to move boundary pixels (issue 23, item 4). One thread for the preprocessing, everywhere, makes every entry
point feed the network the same tensor; the preprocessing of one image is light (the network dominates).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from monai.transforms import Compose

__all__ = ["OneThreadCompose", "one_thread"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Within the block, torch runs on one intra-op thread (as in a ``DataLoader`` worker); restored after."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class OneThreadCompose(Compose):
    """MONAI's ``Compose``, its transforms run on one intra-op thread (:func:`one_thread`), in or out of a worker.

    The inverse (``Invertd`` in the postprocessing) is MONAI's own: every entry point runs it in its main process.
    """

    def __call__(
        self, input_: Any, start: int = 0, end: int | None = None, threading: bool = False, lazy: bool | None = None
    ) -> Any:
        """MONAI's ``Compose.__call__`` (``start``/``end`` select steps), on one intra-op thread."""
        with one_thread():
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)
