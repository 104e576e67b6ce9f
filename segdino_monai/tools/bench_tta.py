"""What test-time augmentation costs: images/s of the plain network and of :class:`TTAInferer`, side by side.

Timed interleaved in one process on the same input (the benchmark's smallest size and largest batch, fp32), so that
the ratio is not skewed by the machine's load drifting between the two. The views of one scale go through the
network as one batch, so TTA with ``n`` views costs about ``n`` times the network plus the flips and the averaging;
the measured ratio says how close to ``1 / n`` the speed is.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import torch

from segdino_monai.inferers import TTAInferer

if TYPE_CHECKING:
    from segdino_monai.tools.benchmark import BenchmarkConfig

__all__ = ["TTA_FLIPS", "tta_markdown", "tta_speed"]

TTA_FLIPS = ("horizontal", "vertical")
"""The views timed: the bundle's default TTA (the image, its mirror image, upside down)."""


def tta_speed(config: BenchmarkConfig) -> dict[str, Any]:
    """Images/s of the plain network and of the default TTA at the smallest size and largest batch, in fp32."""
    from segdino_monai.tools.benchmark import _network, _setup, _sync

    device = _setup(config)
    size, batch = min(config.sizes), max(config.batches)
    net = _network(config).eval()
    tta = TTAInferer(flips=TTA_FLIPS, scales=[1.0])
    x = torch.rand(batch, 3, size, size, device=device)
    seconds: dict[str, list[float]] = {"plain": [], "tta": []}
    with torch.no_grad():
        for step in range(config.repeats + 1):
            for name, fn in (("plain", lambda: net(x)), ("tta", lambda: tta(x, net))):
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                if step:  # the first round is warm-up
                    seconds[name].append(time.perf_counter() - start)
    plain, augmented = (batch / statistics.median(seconds[n]) for n in ("plain", "tta"))
    return {
        "size": size,
        "batch": batch,
        "views": tta.num_views,
        "plain_images_per_s": plain,
        "tta_images_per_s": augmented,
        "tta_vs_plain_speed": augmented / plain,
    }


def tta_markdown(result: dict[str, Any]) -> list[str]:
    """The benchmark report's TTA table."""
    return [
        "",
        f"| TTA ({result['size']}x{result['size']}, batch {result['batch']}, fp32) | views | img/s | vs plain |",
        "|---|---|---|---|",
        f"| plain | 1 | {result['plain_images_per_s']:.2f} | 1.000 |",
        f"| flips ({', '.join(TTA_FLIPS)}) | {result['views']} | {result['tta_images_per_s']:.2f} | "
        f"{result['tta_vs_plain_speed']:.3f} |",
    ]
