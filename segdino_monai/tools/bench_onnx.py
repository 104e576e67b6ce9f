"""ONNX Runtime against PyTorch, side by side: the same network in float32 on the CPU (``segdino bench --onnx``).

The network is exported as ``segdino export`` does it (backbone and folded head, validated), then both run the same
random batches with the benchmark's thread count (ONNX Runtime's intra-op threads, ``torch.set_num_threads``),
timed interleaved so that both see the same machine load.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["onnx_speed", "onnx_table"]

logger = logging.getLogger(__name__)


def onnx_speed(
    config: Any, network: torch.nn.Module | None = None, onnx_model: str | Path | None = None
) -> list[dict[str, Any]]:
    """Images/s of PyTorch and ONNX Runtime (float32, CPU) at each of ``config.sizes`` and ``config.batches``.

    Args:
        config: the benchmark's :class:`~segdino_monai.tools.benchmark.BenchmarkConfig` (its backbone, weights,
            backbone_kwargs, threads, sizes, batches, repeats and work_dir; not imported here: the benchmark imports
            this module).
        network: the SegDINO to time (eval, float32 backbone); default: one of ``config.backbone`` with a random
            decoder.
        onnx_model: an ONNX file of this very network (tests pass one); default: ``network`` exported here into a
            temporary folder under ``config.work_dir``.

    Returns:
        One row per size and batch: ``pytorch_images_per_s``, ``onnxruntime_images_per_s``, ``onnx_vs_pytorch``
        (their ratio) and ``max_abs_diff`` (of the logits of the timed batch).
    """
    from segdino_monai.networks import OnnxRuntimeNetwork, SegDINO
    from segdino_monai.tools.export import export_network

    torch.set_num_threads(config.threads)
    if network is None:
        torch.manual_seed(0)
        network = SegDINO(backbone=config.backbone, weights=config.weights, backbone_kwargs=config.backbone_kwargs)
    net = network.eval()
    rows = []
    Path(config.work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.work_dir) as work:
        if onnx_model is None:
            onnx_model = Path(work) / "segdino.onnx"
            size = min(config.sizes)
            logger.info("exporting %s to ONNX at %dx%d", config.backbone, size, size)
            export_network(net, onnx_model, "onnx", (size, size))
        runtime = OnnxRuntimeNetwork(onnx_model, threads=config.threads)
        for size in config.sizes:
            for batch in config.batches:
                logger.info("ONNX Runtime vs PyTorch %dx%d, batch %d", size, size, batch)
                x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size + batch))
                seconds: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
                outputs: dict[str, torch.Tensor] = {}
                with torch.no_grad():
                    for step in range(config.repeats + 1):  # the first round is warm-up
                        for name, fn in (("pytorch", net), ("onnxruntime", runtime)):
                            start = time.perf_counter()
                            outputs[name] = fn(x)
                            if step:
                                seconds[name].append(time.perf_counter() - start)
                speed = {name: batch / statistics.median(values) for name, values in seconds.items()}
                rows.append(
                    {
                        "size": size,
                        "batch": batch,
                        "pytorch_images_per_s": speed["pytorch"],
                        "onnxruntime_images_per_s": speed["onnxruntime"],
                        "onnx_vs_pytorch": speed["onnxruntime"] / speed["pytorch"],
                        "max_abs_diff": float((outputs["pytorch"] - outputs["onnxruntime"]).abs().max()),
                    }
                )
    return rows


def onnx_table(rows: list[dict[str, Any]], threads: int) -> list[str]:
    """The section of ``benchmark.md``: one line per size and batch."""
    lines = [
        "",
        f"ONNX Runtime vs PyTorch (float32, CPU, {threads} threads, full network):",
        "",
        "| size | batch | PyTorch img/s | ONNX Runtime img/s | ORT/PyTorch | max abs logit diff |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['pytorch_images_per_s']:.2f} | {r['onnxruntime_images_per_s']:.2f} | "
            f"{r['onnx_vs_pytorch']:.3f} | {r['max_abs_diff']:.2g} |"
        )
    return lines
