"""Developer tools run from the command line, apart from the workflows: the speed and memory benchmark."""

from __future__ import annotations

from segdino_monai.tools.benchmark import QUICK, BenchmarkConfig, markdown_table, run_benchmark

__all__ = ["QUICK", "BenchmarkConfig", "markdown_table", "run_benchmark"]
