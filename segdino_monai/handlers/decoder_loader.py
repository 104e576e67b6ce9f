"""Loading the trained decoder (``model.pt``) into the network when a workflow starts, with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ignite.engine import Events
from torch import nn

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["DecoderLoader"]


class DecoderLoader:
    """Load a decoder checkpoint into a SegDINO network at ``Events.STARTED``, in place of MONAI's ``CheckpointLoader``.

    MONAI's loader lets torch's errors through: a truncated file, a pickle or a decoder trained for another number of
    classes end in a traceback that advises ``weights_only=False`` or lists tensor shapes. This one goes through
    :meth:`SegDINO.load_decoder <segdino_monai.networks.SegDINO.load_decoder>`, which names the file and the option to
    pass (``--num_classes``, ``--backbone``).

    Args:
        load_path: the decoder checkpoint (``model.pt`` written by training).
        network: the SegDINO network, or a wrapper of it (``DistributedDataParallel``) with ``.module``.
    """

    def __init__(self, load_path: str | Path, network: nn.Module) -> None:
        self.load_path = Path(load_path)
        self.network = network

    def attach(self, engine: Engine) -> None:
        """Load when the engine starts."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Load the checkpoint (raises :class:`~segdino_monai.utils.errors.InputError` naming the file)."""
        getattr(self.network, "module", self.network).load_decoder(self.load_path)
