"""Write each image's uncertainty map (:func:`segdino_monai.metrics.uncertainty.entropy_map`) next to its mask."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from PIL import Image

from segdino_monai.metrics.uncertainty import entropy_map
from segdino_monai.transforms.post import SaveSegmentationd, source_path
from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.naming import OUTPUT_NAME_KEY

__all__ = ["SaveUncertaintyd"]


class SaveUncertaintyd(SaveSegmentationd):
    """Write ``<name>_uncertainty.png``: the normalised entropy of a sample's probabilities, 0-255 (8-bit grey).

    0 (black) is certain, 255 (white) the most uncertain (a foreground probability of 0.5, or all classes equally
    likely). The file is named as :class:`SaveSegmentationd` names the sample's mask, so it sits beside
    ``<name>_mask.png``; the data pass through unchanged.

    Args:
        keys: the probabilities' key, ``(C, H, W)`` (after the activation, before the threshold).
        output_dir: the folder to write into.
        image_key: the key whose meta data names the source image.
        name_key: the data key holding the output name.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | Path,
        image_key: str = "image",
        name_key: str = OUTPUT_NAME_KEY,
    ) -> None:
        super().__init__(keys, output_dir, image_key, suffix="uncertainty", overlay=False, name_key=name_key)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Write the map of one sample."""
        d = dict(data)
        stem = self.output_dir / self._output_name(source_path(d, self.image_key), d.get(self.name_key))
        for key in self.key_iterator(d):
            entropy = entropy_map(torch.as_tensor(d[key]).detach().cpu())[0]
            grey = Image.fromarray(np.round(entropy.numpy() * 255).astype(np.uint8))
            atomic_write(f"{stem}_{self.suffix}.png", lambda tmp, image=grey: image.save(tmp, format="PNG"))
        return d
