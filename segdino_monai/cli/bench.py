"""``segdino bench``: inference and training speed and memory, as JSON and markdown."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segdino_monai.cli.options import add_model_options

__all__ = ["add_parser", "run"]

logger = logging.getLogger("segdino_monai")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the bench sub-command."""
    bench = commands.add_parser("bench", help="measure inference and training speed and memory (JSON + markdown)")
    bench.add_argument("--out", type=Path, default=Path("runs/benchmark"), help="output folder")
    add_model_options(bench, ["--backbone"])
    bench.add_argument("--weights", help="backbone weights file (speed does not depend on it)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda")
    bench.add_argument("--threads", type=int, default=2, help="CPU threads")
    bench.add_argument("--data-dir", help="images/ + masks/ folder for the training comparison (default: demo data)")
    bench.add_argument("--quick", action="store_true", help="a few-second run with a tiny backbone (tests)")
    bench.add_argument("--sizes", type=int, nargs="+", help="input sizes (default 256 512)")
    bench.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 8; on cuda 1 2 4 ... 256)")
    bench.add_argument("--compile", action="store_true", help="time the network through torch.compile")
    bench.add_argument("--cuda-graphs", action="store_true", help="time it as CUDA graphs (--device cuda only)")
    bench.add_argument(
        "--video", action="store_true", help="also time segdino video (frames/s; decode, model, encode split)"
    )
    bench.add_argument(
        "--time-budget", type=float, default=3600.0, help="seconds for the whole run; later steps are skipped (0: none)"
    )
    bench.add_argument(
        "--onnx", action="store_true", help="also time ONNX Runtime against PyTorch (fp32, CPU; needs the onnx extra)"
    )
    bench.set_defaults(func=run, backbone="vits16")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; exit 1 when it produced no report."""
    from segdino_monai.tools.benchmark import GPU_SWEEP, QUICK, BenchmarkConfig, run_benchmark

    options = {"backbone": args.backbone, "weights": args.weights, "device": args.device, "threads": args.threads}
    options.update({"data_dir": args.data_dir, "work_dir": str(args.out)})
    options.update({"compile": args.compile, "cuda_graphs": args.cuda_graphs, "video": args.video, "onnx": args.onnx})
    options["time_budget_s"] = args.time_budget
    if args.device == "cuda" and not args.quick:
        options.update(GPU_SWEEP)
    options.update({k: tuple(v) for k, v in (("sizes", args.sizes), ("batches", args.batches)) if v})
    report = run_benchmark(BenchmarkConfig(**{**(QUICK if args.quick else {}), **options}), args.out)
    logger.info("\n%s", (args.out / "benchmark.md").read_text())
    logger.info("wrote %s", args.out / "benchmark.json")
    return 0 if report else 1
