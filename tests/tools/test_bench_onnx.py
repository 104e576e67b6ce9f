from __future__ import annotations

import pytest

from segdino_monai.tools.bench_onnx import onnx_speed, onnx_table
from segdino_monai.tools.benchmark import QUICK, BenchmarkConfig
from tests.onnx_files import tiny_export


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory)


def test_onnx_runtime_and_pytorch_are_timed_side_by_side_on_the_same_network(exported, tmp_path):
    config = BenchmarkConfig(**{**QUICK, "sizes": (32, 48), "batches": (1, 3), "threads": 1, "work_dir": str(tmp_path)})
    rows = onnx_speed(config, network=exported.network, onnx_model=exported.onnx)
    assert [(r["size"], r["batch"]) for r in rows] == [(32, 1), (32, 3), (48, 1), (48, 3)]
    for r in rows:
        assert r["pytorch_images_per_s"] > 0 and r["onnxruntime_images_per_s"] > 0
        assert r["onnx_vs_pytorch"] == pytest.approx(r["onnxruntime_images_per_s"] / r["pytorch_images_per_s"])
        assert r["max_abs_diff"] < 1e-4  # the same network: the timed outputs agree
    table = "\n".join(onnx_table(rows, threads=1))
    assert "ONNX Runtime vs PyTorch (float32, CPU, 1 threads, full network):" in table
    assert table.count("\n| 32 | ") == 2 and table.count("\n| 48 | ") == 2
    assert list(tmp_path.iterdir()) == []  # its temporary folder is removed
