"""A small synthetic demo dataset per modality: PNG images, 0/255 PNG masks and a datalist JSON.

The images only look roughly like the real thing (they are for trying the commands and for tests, not for
training a useful model):

- ``ultrasound``: a grey speckled fan (sector) on black with a dark (hypoechoic) blob.
- ``endoscopy``: a reddish-pink textured field with a round-ish brighter polyp and a dark circular vignette.
- ``dermoscopy``: a skin-toned background with a darker brown irregular lesion and a few hair-like dark lines.

The same seed gives byte-identical files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import draw, filters

from segdino_monai.data.datalist import build_datalist, write_datalist
from segdino_monai.data.pairing import SPLITS, Pair
from segdino_monai.data.splits import split_pairs
from segdino_monai.io.writers import write_png_mask
from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.errors import InputError
from segdino_monai.utils.options import MODALITIES

__all__ = ["MODALITIES", "make_demo_dataset", "make_demo_image"]

logger = logging.getLogger(__name__)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]."""
    noise = filters.gaussian(rng.standard_normal(shape), sigma=sigma)
    return noise / (np.abs(noise).max() + 1e-8)


def _blob(
    rng: np.random.Generator, shape: tuple[int, int], center: tuple[float, float], radius: float, wobble: float
) -> np.ndarray:
    """A filled irregular closed shape (radius modulated by a few harmonics) as a boolean mask."""
    theta = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += wobble / k * rng.uniform(0.5, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rows = center[0] + radius * r * np.sin(theta)
    cols = center[1] + radius * rng.uniform(0.8, 1.25) * r * np.cos(theta)
    mask = np.zeros(shape, dtype=bool)
    mask[draw.polygon(rows, cols, shape=shape)] = True
    return mask


def _ultrasound(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:h, 0:w].astype(float)
    apex_r, apex_c = -0.15 * h, w / 2
    dist = np.hypot(rows - apex_r, cols - apex_c)
    angle = np.degrees(np.arctan2(cols - apex_c, rows - apex_r))
    fan = (dist > 0.25 * h) & (dist < 1.1 * h) & (np.abs(angle) < 38)
    tissue = 0.45 + 0.15 * np.sin(dist / h * rng.uniform(8, 14)) + 0.15 * _smooth_noise(rng, (h, w), h / 16)
    speckle = filters.gaussian(rng.rayleigh(1.0, (h, w)), sigma=0.8) / 1.25
    center = (rng.uniform(0.45, 0.65) * h, w / 2 + rng.uniform(-0.15, 0.15) * w)
    lesion = _blob(rng, (h, w), center, rng.uniform(0.08, 0.14) * min(h, w), wobble=0.25) & fan
    soft = filters.gaussian(lesion.astype(float), sigma=1.5)
    image = tissue * speckle * (1 - 0.8 * soft) * np.clip(1.2 - dist / (1.4 * h), 0.3, 1) * fan
    return np.clip(image * 255, 0, 255).astype(np.uint8), lesion


def _endoscopy(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:h, 0:w].astype(float)
    texture = _smooth_noise(rng, (h, w), min(h, w) / 20) + 0.3 * _smooth_noise(rng, (h, w), 1.5)
    base = np.array([0.78, 0.38, 0.36]) + rng.uniform(-0.05, 0.05, 3)
    image = base * (1 + 0.15 * texture)[..., None]
    for _ in range(4):  # vessels: thin darker red lines
        r0, c0, r1, c1, r2, c2 = (rng.uniform(0, 1, 6) * [h, w, h, w, h, w]).astype(int)
        rr, cc = draw.bezier_curve(r0, c0, r1, c1, r2, c2, 1.0, shape=(h, w))
        image[rr, cc] *= [0.9, 0.8, 0.8]
    radius = rng.uniform(0.12, 0.2) * min(h, w)
    center = (h / 2 + rng.uniform(-0.18, 0.18) * h, w / 2 + rng.uniform(-0.18, 0.18) * w)
    polyp = _blob(rng, (h, w), center, radius, wobble=0.12)
    soft = filters.gaussian(polyp.astype(float), sigma=2)
    highlight = np.exp(-(((rows - center[0] + radius / 3) ** 2 + (cols - center[1]) ** 2) / (radius / 2) ** 2))
    image = image * (1 + 0.25 * soft)[..., None] * [1.05, 0.95, 0.95] + 0.3 * (highlight * soft)[..., None]
    dist = np.hypot((rows - h / 2) / (h / 2), (cols - w / 2) / (w / 2))
    image *= np.clip((1.08 - dist) / 0.35, 0, 1)[..., None]
    return np.clip(image * 255, 0, 255).astype(np.uint8), polyp


def _dermoscopy(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    skin = np.array([0.88, 0.7, 0.6]) + rng.uniform(-0.05, 0.05, 3)
    image = skin * (1 + 0.05 * _smooth_noise(rng, (h, w), min(h, w) / 10))[..., None]
    center = (h / 2 + rng.uniform(-0.1, 0.1) * h, w / 2 + rng.uniform(-0.1, 0.1) * w)
    lesion = _blob(rng, (h, w), center, rng.uniform(0.18, 0.28) * min(h, w), wobble=0.35)
    soft = filters.gaussian(lesion.astype(float), sigma=2)
    brown = np.array([0.45, 0.28, 0.2]) * (1 + 0.25 * _smooth_noise(rng, (h, w), 3))[..., None]
    image = image * (1 - soft[..., None]) + brown * soft[..., None]
    for _ in range(int(rng.integers(3, 7))):  # hairs: thin dark curves across the image
        pts = (rng.uniform(-0.1, 1.1, 6) * [h, w, h, w, h, w]).astype(int)
        rr, cc = draw.bezier_curve(*pts, 1.0, shape=(h, w))
        image[rr, cc] = 0.15
    return np.clip(image * 255, 0, 255).astype(np.uint8), lesion


_GENERATORS = {"ultrasound": _ultrasound, "endoscopy": _endoscopy, "dermoscopy": _dermoscopy}


def make_demo_image(
    modality: str = "endoscopy", size: Sequence[int] = (256, 256), seed: int = 0, index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image and its boolean mask.

    Args:
        modality: ``ultrasound`` (greyscale HxW), ``endoscopy`` or ``dermoscopy`` (RGB HxWx3).
        size: (height, width).
        seed: the dataset seed.
        index: the image's index in the dataset.

    Returns:
        The uint8 image and the boolean HxW mask of the lesion.
    """
    if modality not in _GENERATORS:
        raise InputError(f"unknown modality {modality!r}: choose one of {', '.join(MODALITIES)}")
    h, w = (int(s) for s in size)
    if h < 32 or w < 32:
        raise InputError(f"demo images need at least 32x32 pixels, got {h}x{w}")
    return _GENERATORS[modality](np.random.default_rng([seed, index]), h, w)


def make_demo_dataset(
    out_dir: str | Path,
    modality: str = "endoscopy",
    num_images: int = 12,
    size: Sequence[int] = (256, 256),
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Path:
    """Write a demo dataset: ``images/demo_NNN.png``, ``masks/demo_NNN.png`` (0/255) and ``datalist.json``.

    Args:
        out_dir: the folder to write into (created when missing).
        modality: ``ultrasound``, ``endoscopy`` or ``dermoscopy``.
        num_images: how many image/mask pairs (at least 3: one per split).
        size: (height, width) of every image.
        seed: same seed, byte-identical files.
        val_fraction: share of validation pairs.
        test_fraction: share of test pairs.

    Returns:
        The path of the datalist JSON (relative paths, readable by ``monai.data.load_decathlon_datalist``).
    """
    if num_images < 3:
        raise InputError(f"num_images must be at least 3 (one per split), got {num_images}")
    out = Path(out_dir).resolve()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(num_images):
        image, mask = make_demo_image(modality, size, seed, index)
        name = f"demo_{index:03d}.png"
        picture = Image.fromarray(image)
        atomic_write(out / "images" / name, lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
        write_png_mask(mask.astype(np.uint8), out / "masks" / name)
        pairs.append(Pair(out / "images" / name, (out / "masks" / name,)))
    splits = split_pairs(pairs, out, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    datalist: dict = build_datalist(splits, out)
    datalist["summary"] = {
        "layout": "demo",
        "modality": modality,
        "seed": seed,
        "size": [int(s) for s in size],
        "counts": {s: len(splits[s]) for s in SPLITS},
    }
    path = write_datalist(datalist, out / "datalist.json")
    logger.info("wrote %d %s demo pairs to %s", num_images, modality, out)
    return path
