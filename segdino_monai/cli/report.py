"""``segdino report``: the evaluation report of a run (report.html, report.md, report_files/)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the report sub-command."""
    report = commands.add_parser(
        "report",
        help="(re)write the evaluation report of a run: report.html, report.md and report_files/",
        description="Write RUN_DIR/report.html (self-contained) and report.md from RUN_DIR/metrics_per_image.csv, "
        "metrics_summary.json, the masks in RUN_DIR/predictions and the training curves in "
        "RUN_DIR/epoch_metrics.json.",
    )
    report.add_argument("run_dir", type=Path, help="the evaluation's output folder (--output-dir of evaluate)")
    report.add_argument("--predictions-dir", type=Path, help="the masks folder (default RUN_DIR/predictions)")
    report.add_argument(
        "--epoch-metrics", type=Path, help="the training's per-epoch metrics (default RUN_DIR/epoch_metrics.json)"
    )
    report.add_argument("--cases", type=int, default=4, help="worst and best cases to show (default 4)")
    report.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report of ``args.run_dir``."""
    from segdino_monai.reporting import write_report

    write_report(args.run_dir, args.predictions_dir, args.epoch_metrics, args.cases)
    return 0
