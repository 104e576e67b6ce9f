"""Deterministic training/validation/test splits.

Rules:

- A dataset's official splits are kept. Splits it lacks are carved from its official training pool in proportion to
  their fractions (TN3K and ISIC 2016 have an official test split only: validation comes out of training).
- Without official splits, all pairs are divided by ``1 - val_fraction - test_fraction`` / ``val_fraction`` /
  ``test_fraction``; with at least as many pairs as splits, every split gets at least one pair.
- There is always a validation split, separate from test: checkpoints are selected on validation, never on test.
- The order is a SHA-256 hash of the seed and each image's path relative to the dataset folder, so the same seed
  gives the same split on every machine, whatever the file system's listing order or the library versions; adding
  images does not move the others between splits more than their share requires.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

from segdino_monai.data.pairing import SPLITS, Pair
from segdino_monai.utils.errors import InputError

__all__ = ["split_pairs"]


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1): a validation split is required, got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise InputError(
            f"test_fraction must be in [0, 1) and val_fraction + test_fraction below 1, got {val_fraction} and "
            f"{test_fraction}"
        )


def _counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Pairs per split: rounded shares, at least one for every split with a positive fraction."""
    wanted = [s for s, f in fractions.items() if f > 0]
    if n < len(wanted):
        raise InputError(f"{n} pair(s) cannot fill the {len(wanted)} splits {wanted}: add images or lower fractions")
    counts = {s: max(1, math.floor(n * f + 0.5)) for s, f in fractions.items() if f > 0 and s != "training"}
    while sum(counts.values()) > n - 1:  # training keeps at least one pair
        largest = max(counts, key=lambda s: (counts[s], s))
        counts[largest] -= 1
    counts["training"] = n - sum(counts.values())
    return counts


def _order_key(pair: Pair, root: Path, seed: int) -> str:
    try:
        name = pair.image.relative_to(root).as_posix()
    except ValueError:
        name = pair.image.as_posix()
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def split_pairs(
    pairs: Sequence[Pair],
    root: str | Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, list[Pair]]:
    """Split pairs into ``training``, ``validation`` and ``test`` by the rules of this module.

    Args:
        pairs: the pairs; ``Pair.split`` holds the official split, if any.
        root: the dataset folder; image paths relative to it make the order machine-independent.
        val_fraction: share of validation pairs.
        test_fraction: share of test pairs (may be 0 when the dataset has no official test split).
        seed: the seed of the order.

    Returns:
        The three splits, each sorted by image path.

    Raises:
        ValueError: for fractions out of range or too few pairs to fill every split.
    """
    _check_fractions(val_fraction, test_fraction)
    root = Path(root).resolve()
    fractions = {"training": 1.0 - val_fraction - test_fraction, "validation": val_fraction, "test": test_fraction}
    result: dict[str, list[Pair]] = {s: [p for p in pairs if p.split == s] for s in SPLITS}
    official = {s for s in SPLITS if result[s]}
    pool = [p for p in pairs if p.split in (None, "training")]
    result["training"] = []
    targets = {s: f for s, f in fractions.items() if s == "training" or s not in official}
    total = sum(targets.values())
    counts = _counts(len(pool), {s: f / total for s, f in targets.items()})

    ordered = sorted(pool, key=lambda p: _order_key(p, root, seed))
    start = 0
    for split in ("validation", "test", "training"):
        if split in counts:
            result[split] += ordered[start : start + counts[split]]
            start += counts[split]
    return {s: sorted(result[s], key=lambda p: p.image) for s in SPLITS}
