from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segdino_monai.cli import main
from segdino_monai.networks import SegDINO
from segdino_monai.networks.nets.dinov3_backbone import DINOv3Backbone
from segdino_monai.tools.benchmark import QUICK, _precision_agreement


def _simulate_cpu(monkeypatch, avx512_bf16: bool, amx: bool, capability: str) -> None:
    """Make torch see a CPU of another kind (the quick benchmark runs in this process)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)


def test_quick_benchmark_writes_a_complete_report(tmp_path, monkeypatch):
    """The benchmark runs end to end on a tiny backbone; no timing is asserted, only the report's content."""
    _simulate_cpu(monkeypatch, avx512_bf16=True, amx=False, capability="AVX512")  # bf16 rows on any test machine
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(report["gemm_gflops"]) == {"float32", "bfloat16"} and report["gemm_gflops"]["float32"] > 0
    assert report["backbone_gflop_per_image"]["32"] > 0
    rows = report["inference"]
    assert {(r["size"], r["batch"], r["precision"]) for r in rows} == {(32, 2, "float32"), (32, 2, "bfloat16")}
    assert all(r["full_images_per_s"] > 0 and r["peak_full_mib"] >= r["peak_backbone_mib"] > 0 for r in rows)
    assert set(report["training"]) == {"reference", "frozen", "cache"}
    assert report["training"]["cache"]["samples"] == 8
    agreement = report["training"]["cache"]["agreement_dice_bf16_vs_fp32"]
    assert report["summary"]["bf16_vs_fp32_mask_dice"] == agreement > 0.9  # bf16 flips few pixels, not most
    assert set(report["summary"]) >= {"cache_vs_reference_speed", "full_vs_backbone_speed_fp32", "bf16_vs_fp32_speed"}
    assert all(r["latency_ms"] > 0 for r in rows)
    # ms per batch and images/s are two views of the same median time
    assert all(r["latency_ms"] == pytest.approx(1000 * r["batch"] / r["full_images_per_s"]) for r in rows)
    cache = report["training"]["cache"]
    assert report["summary"]["cache_build_views_per_s"] == pytest.approx(cache["samples"] / cache["cache_build_s"])
    bf16 = next(r for r in rows if r["precision"] == "bfloat16")
    ceiling = report["gemm_gflops"]["bfloat16"] * 1e9
    flops = report["backbone_gflop_per_image"]["32"] * 1e9
    assert report["summary"]["bf16_fraction_of_bf16_gemm"] == pytest.approx(bf16["full_images_per_s"] * flops / ceiling)
    table = (tmp_path / "benchmark.md").read_text()
    assert "(c) feature cache" in table and "| 32 | 2 | bfloat16 |" in table
    assert report["machine"]["cpu_kind"] == "avx512_bf16" and report["skipped"] == []
    assert not list(tmp_path.glob("feature_cache/*/*.pt"))  # the benchmark's own cache is removed
    tta = report["tta"]
    assert (tta["size"], tta["batch"], tta["views"]) == (32, 2, 3)
    assert tta["tta_images_per_s"] > 0 and tta["tta_vs_plain_speed"] == pytest.approx(
        tta["tta_images_per_s"] / tta["plain_images_per_s"]
    )
    assert "| flips (horizontal, vertical) | 3 |" in table


def test_precision_agreement_is_the_dice_of_the_fp32_and_bf16_masks_over_all_samples():
    torch.manual_seed(0)
    net = SegDINO(backbone_kwargs=QUICK["backbone_kwargs"])
    samples = [{"image": torch.rand(3, 64, 64)} for _ in range(4)]
    masks = {}
    with torch.no_grad():
        for precision in ("float32", "bfloat16"):
            net.backbone.precision = precision
            masks[precision] = np.concatenate([net(s["image"][None]).numpy() > 0 for s in samples])
    net.backbone.precision = "float32"
    fp32, bf16 = masks["float32"], masks["bfloat16"]
    expected = 2 * np.logical_and(fp32, bf16).sum() / (fp32.sum() + bf16.sum())
    assert 0.9 < expected < 1.0  # bf16 changes a few pixels near the threshold of this random decoder

    assert _precision_agreement(net, samples, torch.device("cpu")) == pytest.approx(expected, abs=1e-12)
    assert net.backbone.precision == "float32"  # left as it was found


def test_gpu_options_are_refused_on_the_cpu_and_the_sweep_can_be_chosen(tmp_path, caplog):
    """--cuda-graphs needs a GPU (one line, exit 2); --sizes/--batches choose the sweep (CPU path of the GPU run)."""
    assert main(["bench", "--quick", "--cuda-graphs", "--out", str(tmp_path / "graphs")]) == 2
    assert "cuda_graphs needs --device cuda" in caplog.text and not (tmp_path / "graphs" / "benchmark.json").exists()
    assert main(["bench", "--quick", "--sizes", "32", "--batches", "1", "3", "--out", str(tmp_path / "sweep")]) == 0
    report = json.loads((tmp_path / "sweep" / "benchmark.json").read_text())
    assert sorted({(r["size"], r["batch"]) for r in report["inference"]}) == [(32, 1), (32, 3)]
    single = [r["latency_ms"] for r in report["inference"] if r["batch"] == 1]
    assert report["summary"]["batch1_latency_ms"] == min(single)


def test_a_cpu_without_native_bf16_skips_every_bf16_step_and_says_so(tmp_path, monkeypatch):
    """AVX2 only: no bf16 ceiling, rows or mask agreement (bf16 is ~100x slower there); the table says why."""
    _simulate_cpu(monkeypatch, avx512_bf16=False, amx=False, capability="AVX2")

    def no_bf16(*args, **kwargs):
        raise AssertionError("a bf16 copy of the backbone was made")

    monkeypatch.setattr(DINOv3Backbone, "_bf16_model", no_bf16)
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["machine"]["cpu_kind"] == "avx2"
    assert set(report["gemm_gflops"]) == {"float32"}
    assert {r["precision"] for r in report["inference"]} == {"float32"} and len(report["inference"]) == 1
    assert "agreement_dice_bf16_vs_fp32" not in report["training"]["cache"]
    assert not [k for k in report["summary"] if "bf16" in k]
    assert [s["step"] for s in report["skipped"]] == ["bf16 ceiling, bf16 rows and bf16-vs-fp32 mask agreement"]
    table = (tmp_path / "benchmark.md").read_text()
    assert "(avx2)" in table and "no native bf16" in table and "bfloat16 |" not in table


def test_steps_after_the_time_budget_are_skipped_and_listed(tmp_path, monkeypatch):
    """A spent budget still writes the report: the ceiling, and every later step listed as skipped."""
    _simulate_cpu(monkeypatch, avx512_bf16=True, amx=False, capability="AVX512")
    args = ["bench", "--quick", "--batches", "1", "2", "--time-budget", "1e-9", "--out", str(tmp_path)]
    assert main(args) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["inference"] == [] and report["training"] == {} and report["summary"] == {} and "tta" not in report
    expected = [f"inference 32x32, batch {b}, {p}" for b in (1, 2) for p in ("float32", "bfloat16")]
    expected += ["test-time augmentation"] + [f"training epoch: {mode}" for mode in ("reference", "frozen", "cache")]
    assert [s["step"] for s in report["skipped"]] == expected
    assert all("time budget of 1e-09 s" in s["why"] for s in report["skipped"])
    assert report["gemm_gflops"]["float32"] > 0
    assert "| training epoch: cache | the time budget of 1e-09 s was spent |" in (tmp_path / "benchmark.md").read_text()
