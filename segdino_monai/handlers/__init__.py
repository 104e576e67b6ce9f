from __future__ import annotations

from segdino_monai.handlers.decoder_loader import DecoderLoader

__all__ = ["DecoderLoader"]
