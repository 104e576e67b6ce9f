"""Where the CPU time of fp32 inference goes: a torch.profiler breakdown of the full network by kind of operation.

For the fp32 gap of issue 17: the benchmark compares the network's FLOP rate with a 4096^3 sgemm. This script splits
one batch's time into matrix multiplies (with their own FLOP rate, and the sgemm rate of the same shapes measured in
the same run), attention, normalisation, activations, RoPE and memory copies, for the network as it runs
(``RopeAttention``) and with timm's own attention (``timm``), timed interleaved; writes ``profile.json`` and
``profile.md``.

python scripts/profile_cpu.py --out runs/profile --batch 8 --size 256
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from timm.models.eva import EvaAttention
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
    "aten::addcmul_": "elementwise (RoPE, scales)",
    "aten::cat": "copies and layout",
    "aten::copy_": "copies and layout",
    "aten::clone": "copies and layout",
    "aten::contiguous": "copies and layout",
    "aten::convolution": "patch embedding (conv)",
    "aten::mkldnn_convolution": "patch embedding (conv)",
}


def _gemm_gflops(m: int, k: int, n: int, repeats: int) -> float:
    a, b = torch.rand(m, k), torch.rand(k, n)
    seconds = statistics.median(_times(lambda: a @ b, repeats))
    return 2 * m * k * n / seconds / 1e9


def _times(fn, repeats: int) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _breakdown(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict:
    """Share of the profiled time per kind of operation, and per matrix-multiply shape."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(repeats):
            net(x)
    by_kind: dict[str, float] = defaultdict(float)
    other: dict[str, float] = defaultdict(float)
    shapes: dict[tuple, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        kind = KINDS.get(event.key, "other")
        by_kind[kind] += event.self_cpu_time_total
        if kind == "other":
            other[event.key] += event.self_cpu_time_total
        mats = [tuple(s) for s in event.input_shapes or [] if s and len(s) == 2]
        if event.key in ("aten::addmm", "aten::mm") and len(mats) >= 2:
            (m, k), (_, n) = mats[-2], mats[-1]
            shapes[(m, k, n)] += event.self_cpu_time_total
    total = sum(by_kind.values())
    return {
        "time_share": {k: v / total for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "other_ops": {k: v / total for k, v in sorted(other.items(), key=lambda kv: -kv[1])[:10]},
        "matmul_shapes": {f"{m}x{k}x{n}": v / total for (m, k, n), v in sorted(shapes.items(), key=lambda kv: -kv[1])},
    }


def _with_timm_attention(net: torch.nn.Module) -> torch.nn.Module:
    timm_net = copy.deepcopy(net)
    for module in timm_net.modules():
        if isinstance(module, EvaAttention):
            module.__class__ = EvaAttention
    return timm_net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/profile")
    parser.add_argument("--backbone", default="vits16")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    nets = {"rope_attention": SegDINO(backbone=args.backbone, backbone_precision="float32").eval()}
    nets["timm"] = _with_timm_attention(nets["rope_attention"])
    x = torch.rand(args.batch, 3, args.size, args.size)
    gemm = _gemm_gflops(4096, 4096, 4096, 3)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            nets["timm"](x)
        flops = float(counter.get_total_flops())
        mm_flops = float(sum(v for k, v in counter.get_flop_counts()["Global"].items() if "mm" in str(k)))
        times: dict[str, list[float]] = {name: [] for name in nets}
        for _ in range(args.repeats):  # interleaved: both see the same machine
            for name, net in nets.items():
                times[name] += _times(lambda net=net: net(x), 1)
    report: dict = {
        "backbone": args.backbone,
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "torch": torch.__version__,
        "network_gflop_per_image": flops / args.batch / 1e9,
        "matmul_flop_share": mm_flops / flops,
        "sgemm_4096_gflops": gemm,
        "variants": {},
    }
    for name, net in nets.items():
        seconds = statistics.median(times[name])
        parts = _breakdown(net, x, max(2, args.repeats // 2))
        mm_seconds = parts["time_share"].get("matmul", 0.0) * seconds
        report["variants"][name] = {
            "images_per_s": args.batch / seconds,
            "network_gflops": flops / seconds / 1e9,
            "fraction_of_sgemm": flops / seconds / 1e9 / gemm,
            "matmul_gflops_inside_network": mm_flops / mm_seconds / 1e9 if mm_seconds else None,
            **parts,
        }
    report["speedup_rope_attention"] = (
        report["variants"]["rope_attention"]["images_per_s"] / report["variants"]["timm"]["images_per_s"]
    )
    shapes = list(report["variants"]["timm"]["matmul_shapes"])[:4]
    report["sgemm_gflops_of_network_shapes"] = {s: _gemm_gflops(*(int(v) for v in s.split("x")), 5) for s in shapes}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "profile.md").write_text(_markdown(report), encoding="utf-8")
    logger.info("%s", _markdown(report))


def _markdown(report: dict) -> str:
    timm, ours = report["variants"]["timm"], report["variants"]["rope_attention"]
    lines = [
        f"{report['backbone']} {report['size']}x{report['size']}, batch {report['batch']}, fp32, {report['threads']} "
        f"threads, torch {report['torch']}; 4096^3 sgemm: {report['sgemm_4096_gflops']:.0f} GFLOP/s; "
        f"{report['network_gflop_per_image']:.2f} GFLOP/image, {report['matmul_flop_share']:.1%} of it in matrix "
        "multiplies",
        "",
        "| | timm attention | RopeAttention |",
        "|---|---|---|",
        f"| images/s | {timm['images_per_s']:.2f} | {ours['images_per_s']:.2f} |",
        f"| fraction of the sgemm ceiling | {timm['fraction_of_sgemm']:.1%} | {ours['fraction_of_sgemm']:.1%} |",
        f"| matrix multiplies inside the network, GFLOP/s | {timm['matmul_gflops_inside_network']:.0f} | "
        f"{ours['matmul_gflops_inside_network']:.0f} |",
    ]
    kinds = list(timm["time_share"])
    lines += [
        f"| share of time: {k} | {timm['time_share'][k]:.1%} | {ours['time_share'].get(k, 0):.1%} |" for k in kinds
    ]
    lines += [
        "",
        "| matmul shape (m x k x n) | share of time (timm) | sgemm GFLOP/s of that shape alone |",
        "|---|---|---|",
    ]
    lines += [
        f"| {s} | {timm['matmul_shapes'][s]:.1%} | {g:.0f} |"
        for s, g in report["sgemm_gflops_of_network_shapes"].items()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
