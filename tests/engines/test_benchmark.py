from __future__ import annotations

import json

from segdino_monai.cli import main


def test_quick_benchmark_writes_a_complete_report(tmp_path):
    """The benchmark runs end to end on a tiny backbone; no timing is asserted, only the report's content."""
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(report["gemm_gflops"]) == {"float32", "bfloat16"} and report["gemm_gflops"]["float32"] > 0
    assert report["backbone_gflop_per_image"]["32"] > 0
    rows = report["inference"]
    assert {(r["size"], r["batch"], r["precision"]) for r in rows} == {(32, 2, "float32"), (32, 2, "bfloat16")}
    assert all(r["full_images_per_s"] > 0 and r["peak_full_mib"] >= r["peak_backbone_mib"] > 0 for r in rows)
    assert set(report["training"]) == {"reference", "frozen", "cache"}
    assert report["training"]["cache"]["samples"] == 8
    assert 0.0 <= report["training"]["cache"]["agreement_dice_bf16_vs_fp32"] <= 1.0
    assert set(report["summary"]) >= {"cache_vs_reference_speed", "full_vs_backbone_speed_fp32", "bf16_vs_fp32_speed"}
    table = (tmp_path / "benchmark.md").read_text()
    assert "(c) feature cache" in table and "| 32 | 2 | bfloat16 |" in table
    assert not list(tmp_path.glob("feature_cache/*/*.pt"))  # the benchmark's own cache is removed
