"""Summary statistics of per-image metric values, as the summary JSON and the report page show them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["summarise"]


def summarise(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, median, std, min and max over the finite values, with the count of images left out (NaN or inf)."""
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    stats: dict[str, float | int | None] = {"n": int(array.size), "n_excluded": int(array.size - finite.size)}
    for name, op in (("mean", np.mean), ("median", np.median), ("std", np.std), ("min", np.min), ("max", np.max)):
        stats[name] = float(op(finite)) if finite.size else None
    return stats
