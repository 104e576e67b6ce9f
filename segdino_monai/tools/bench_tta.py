"""What test-time augmentation costs: images/s of the plain network and of :class:`TTAInferer`, side by side.

Timed interleaved in one process on the same input (the benchmark uses its smallest size and largest batch, fp32), so
that the ratio is not skewed by the machine's load drifting between the two. The views of one scale go through the
network as one batch, so TTA with ``n`` views costs about ``n`` times the network plus the flips and the averaging;
the measured ratio says how close to ``1 / n`` the speed is.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from segdino_monai.inferers import TTAInferer

__all__ = ["TTA_FLIPS", "tta_markdown", "tta_speed"]

TTA_FLIPS = ("horizontal", "vertical")
"""The views timed: the bundle's default TTA (the image, its mirror image, upside down)."""


def tta_speed(network: Callable[[torch.Tensor], torch.Tensor], size: int, batch: int, repeats: int) -> dict[str, Any]:
    """Images/s of the plain network and of the default TTA on ``batch`` random ``size`` x ``size`` images.

    Args:
        network: the model, in evaluation mode, on its device (the benchmark's: fp32).
        size: the input height and width.
        batch: images per call.
        repeats: timed rounds (the median is reported), after one round of warm-up.
    """
    device = next(network.parameters()).device if isinstance(network, torch.nn.Module) else torch.device("cpu")
    tta = TTAInferer(flips=TTA_FLIPS, scales=[1.0])
    x = torch.rand(batch, 3, size, size, device=device)
    seconds: dict[str, list[float]] = {"plain": [], "tta": []}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        for step in range(repeats + 1):
            for name, fn in (("plain", lambda: network(x)), ("tta", lambda: tta(x, network))):
                sync()
                start = time.perf_counter()
                fn()
                sync()
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
