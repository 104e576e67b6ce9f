from __future__ import annotations

from segdino_monai.handlers.decoder_loader import DecoderLoader
from segdino_monai.handlers.stats import StatsHandler

__all__ = ["DecoderLoader", "StatsHandler"]
