"""CPU forward benchmark: the full SegDINO network against its frozen backbone alone, side by side in one run.

Timings are interleaved (backbone, full, backbone, full, ...) so that load on the machine hits both alike; peak
memory is measured in a fresh child process per variant. Writes a JSON file and prints a short table.

    python scripts/benchmark_forward.py --backbone vits16 --size 256 --batch 8 --threads 2 --out runs/bench.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from segdino_monai.networks import DINOv3Backbone, SegDINO

logger = logging.getLogger("benchmark_forward")
VARIANTS = ("backbone", "full")


def build(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """The full network and, sharing its weights, its backbone."""
    net = SegDINO(out_channels=1, backbone=args.backbone, weights=args.weights).eval()
    return {"backbone": net.backbone, "full": net}


def peak_memory_child(args: argparse.Namespace, variant: str) -> float:
    """Run one variant in a fresh process and return its peak resident memory in MiB."""
    command = [sys.executable, __file__, *sys.argv[1:], "--child", variant]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.child == "backbone":
        model = DINOv3Backbone(args.backbone, weights=args.weights).eval()
    else:
        model = build(args)["full"]
    with torch.no_grad():
        model(torch.rand(args.batch, 3, args.size, args.size))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vits16")
    parser.add_argument("--weights", default=None, help="DINOv3 weights file (speed does not depend on it)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark_forward.json"))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        logging.disable(logging.WARNING)
        return child(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = build(args)
    x = torch.rand(args.batch, 3, args.size, args.size)
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with torch.no_grad():
        for step in range(args.warmup + args.repeats):
            for variant in VARIANTS:
                start = time.perf_counter()
                models[variant](x)
                if step >= args.warmup:
                    seconds[variant].append(time.perf_counter() - start)

    results = {}
    for variant in VARIANTS:
        median = statistics.median(seconds[variant])
        results[variant] = {
            "median_s_per_batch": median,
            "images_per_s": args.batch / median,
            "peak_rss_mib": peak_memory_child(args, variant),
        }
    ratio = results["full"]["images_per_s"] / results["backbone"]["images_per_s"]
    report = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "child")},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "results": results,
        "full_over_backbone_speed": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    logger.info("| variant | images/s | s/batch | peak RSS MiB |\n|---|---|---|---|")
    for variant, r in results.items():
        logger.info(
            "| %s | %.2f | %.3f | %.0f |", variant, r["images_per_s"], r["median_s_per_batch"], r["peak_rss_mib"]
        )
    logger.info("full / backbone speed: %.3f  (%s, %d threads, batch %d, %dx%d)", ratio, args.backbone,
                args.threads, args.batch, args.size, args.size)  # fmt: skip
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
