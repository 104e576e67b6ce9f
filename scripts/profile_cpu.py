"""Where the CPU time of fp32 inference goes: a torch.profiler breakdown of the full network by kind of operation.

For the fp32 gap of issue 17: the benchmark compares the network's FLOP rate with a 4096^3 sgemm. This script splits
one batch's time into matrix multiplies (with their own FLOP rate, and the sgemm rate of the same shapes measured in
the same run), attention, normalisation, activations, RoPE and memory copies, and writes ``profile.json`` and
``profile.md``.

python scripts/profile_cpu.py --out runs/profile --batch 8 --size 256
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from segdino_monai.networks import SegDINO

logger = logging.getLogger("profile_cpu")

#: Profiler op name -> kind. Everything else is "other" (listed by name in the JSON).
KINDS = {
    "aten::addmm": "matmul",
    "aten::mm": "matmul",
    "aten::bmm": "matmul",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
    "aten::_scaled_dot_product_attention_math": "attention",
    "aten::native_layer_norm": "layer norm",
    "aten::gelu": "activation",
    "aten::mul": "elementwise (RoPE, scales)",
    "aten::add": "elementwise (RoPE, scales)",
    "aten::neg": "elementwise (RoPE, scales)",
    "aten::cat": "copies and layout",
    "aten::copy_": "copies and layout",
    "aten::clone": "copies and layout",
    "aten::contiguous": "copies and layout",
    "aten::convolution": "patch embedding (conv)",
    "aten::mkldnn_convolution": "patch embedding (conv)",
}


def _time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _gemm_gflops(m: int, k: int, n: int, repeats: int) -> float:
    a, b = torch.rand(m, k), torch.rand(k, n)
    return 2 * m * k * n / _time(lambda: a @ b, repeats) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/profile")
    parser.add_argument("--backbone", default="vits16")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    net = SegDINO(backbone=args.backbone, backbone_precision="float32").eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            net(x)
        flops = float(counter.get_total_flops())
        mm_flops = float(sum(v for k, v in counter.get_flop_counts()["Global"].items() if "mm" in str(k)))
        seconds = _time(lambda: net(x), args.repeats)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(args.repeats):
                net(x)
    events = prof.key_averages(group_by_input_shape=True)
    by_kind: dict[str, float] = defaultdict(float)
    other: dict[str, float] = defaultdict(float)
    mm_shapes: dict[tuple, float] = defaultdict(float)
    for event in events:
        us = event.self_cpu_time_total / args.repeats
        kind = KINDS.get(event.key, "other")
        by_kind[kind] += us
        if kind == "other":
            other[event.key] += us
        if event.key in ("aten::addmm", "aten::mm") and event.input_shapes:
            shapes = [tuple(s) for s in event.input_shapes if s]
            mats = [s for s in shapes if len(s) == 2]
            if len(mats) >= 2:
                (m, k), (_, n) = mats[-2], mats[-1]
                mm_shapes[(m, k, n)] += us
    total_us = sum(by_kind.values())
    gemm = _gemm_gflops(4096, 4096, 4096, 3)
    shapes = []
    for (m, k, n), us in sorted(mm_shapes.items(), key=lambda kv: -kv[1])[:6]:
        shapes.append({"m": m, "k": k, "n": n, "share": us / total_us, "sgemm_gflops": _gemm_gflops(m, k, n, 5)})
    mm_us = by_kind["matmul"]
    report = {
        "backbone": args.backbone,
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "torch": torch.__version__,
        "images_per_s": args.batch / seconds,
        "network_gflop_per_image": flops / args.batch / 1e9,
        "network_gflops": flops / seconds / 1e9,
        "sgemm_4096_gflops": gemm,
        "fraction_of_sgemm": flops / seconds / 1e9 / gemm,
        "matmul_gflops_inside_network": mm_flops / (mm_us * 1e-6) / 1e9 if mm_us else None,
        "matmul_flop_share": mm_flops / flops,
        "time_share": {k: v / total_us for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "other_ops": {k: v / total_us for k, v in sorted(other.items(), key=lambda kv: -kv[1])[:10]},
        "matmul_shapes": shapes,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    lines = [
        f"{args.backbone} {args.size}x{args.size}, batch {args.batch}, fp32, {args.threads} threads, torch "
        f"{torch.__version__}: {report['images_per_s']:.2f} images/s = {report['network_gflops']:.0f} GFLOP/s = "
        f"{report['fraction_of_sgemm']:.0%} of the 4096^3 sgemm ({gemm:.0f} GFLOP/s); matrix multiplies inside the "
        f"network run at {report['matmul_gflops_inside_network']:.0f} GFLOP/s",
        "",
        "| kind | share of time |",
        "|---|---|",
        *(f"| {k} | {v:.1%} |" for k, v in report["time_share"].items()),
        "",
        "| matmul shape (m x k x n) | share of time | sgemm GFLOP/s of that shape alone |",
        "|---|---|---|",
        *(f"| {s['m']} x {s['k']} x {s['n']} | {s['share']:.1%} | {s['sgemm_gflops']:.0f} |" for s in shapes),
    ]
    (out / "profile.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("\n".join(lines))


if __name__ == "__main__":
    main()
