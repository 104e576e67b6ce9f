"""Helpers for the data tests: tiny image files written with PIL in a temporary folder."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (8, 6), mode: str = "RGB", seed: int = 0) -> Path:
    """A small random image of (width, height) ``size``, in the format of the file's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(path)
    return path


def write_pairs(
    images: Path, masks: Path, stems: Iterable[str], image_ext: str = ".png", mask_name: str = "{stem}.png"
) -> None:
    """One image and one mask per stem."""
    for i, stem in enumerate(stems):
        write_image(images / f"{stem}{image_ext}", seed=i)
        write_image(masks / mask_name.format(stem=stem), mode="L", seed=100 + i)


@pytest.fixture
def make_pairs() -> Callable[..., None]:
    return write_pairs


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image
