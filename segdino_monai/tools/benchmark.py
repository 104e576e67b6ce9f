"""The speed and memory benchmark behind ``segdino bench`` and ``scripts/benchmark.py``.

One run measures, side by side on the same machine:

- the matrix-multiply ceiling (a large sgemm, fp32 and bf16) and the backbone's FLOPs per image;
- inference images/s of the full network and of the backbone alone (sizes, batch sizes, fp32 and bf16 autocast),
  timed interleaved, with peak memory from a fresh process per setting;
- the cost of test-time augmentation: images/s with the default three TTA views against the plain network
  (:mod:`segdino_monai.tools.bench_tta`);
- a training epoch three ways: (a) reference-style, the backbone inside autograd and optimised, as the SegDINO
  reference code trains; (b) the frozen backbone under no_grad every step; (c) the decoder from the feature cache
  (first epoch including the cache build, then later epochs), each in its own process for peak memory;
- the agreement (Dice) of bf16 and fp32 masks from a decoder trained in (c).

Peak memory is the process's peak resident set size on CPU and ``torch.cuda.max_memory_allocated`` on GPU.

On a CPU without native bfloat16 (no AVX512-BF16 or AMX: AVX2 only), a bf16 matrix multiply runs about 100x slower
than fp32, so the bf16 rows, the bf16 ceiling and the bf16-vs-fp32 mask agreement are skipped there, and said so.
The whole run has a time budget (``time_budget_s``): a step that would start after it is spent is skipped and listed.

On a GPU (``--device cuda``) the inference sweep defaults to :data:`GPU_SWEEP` (batch 1 to 256 at 256x256 and
512x512, fp32 and bf16), with ``torch.compile`` (``compile``) and CUDA graphs (``cuda_graphs``: ``torch.compile``'s
``reduce-overhead`` mode, which captures the network as a graph) as options; the summary gives the latency at
batch 1, images/s at the largest batch and its fraction of the bf16 matrix-multiply ceiling measured in the same run,
beside the targets of an H200 (:data:`GPU_TARGETS`), and the feature cache's build rate.
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from segdino_monai.networks.nets.dinov3_backbone import use_bf16
from segdino_monai.tools.bench_tta import tta_markdown, tta_speed
from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.errors import InputError

__all__ = ["GPU_SWEEP", "GPU_TARGETS", "QUICK", "BenchmarkConfig", "markdown_table", "run_benchmark"]

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkConfig:
    """What to measure.

    Args:
        backbone: DINOv3 size.
        weights: backbone weights file (speed does not depend on it; random when ``None``).
        backbone_kwargs: timm overrides (the quick mode uses a tiny model).
        sizes: square input sizes for inference.
        batches: batch sizes for inference.
        precisions: ``float32`` and/or ``bfloat16``.
        repeats: timed repetitions per inference setting.
        train_images: images of the training comparison (from ``data_dir``, or the demo generator).
        train_batch: batch size of the training comparison.
        train_size: input size of the training comparison.
        cache_epochs: epochs timed after the cache build.
        data_dir: a dataset folder (Kvasir-SEG layout: ``images/``, ``masks/``); ``None`` for demo data.
        threads: CPU threads.
        gemm_size: size of the square sgemm.
        device: ``cpu`` or ``cuda``.
        work_dir: scratch folder (the feature cache).
        isolate: measure memory and training in fresh processes (``False``: in this one, memory then overlaps).
        compile: time the network through ``torch.compile`` (its compilation is warm-up, not timed).
        cuda_graphs: time it through CUDA graphs (``torch.compile(mode="reduce-overhead")``; ``cuda`` only).
        onnx: also time ONNX Runtime against PyTorch (float32, CPU; :mod:`segdino_monai.tools.bench_onnx`).
        video: also time ``segdino video`` (:mod:`segdino_monai.tools.bench_video`).
        time_budget_s: seconds for the whole run; the steps that would start later are skipped (``0``: no budget).
    """

    backbone: str = "vits16"
    weights: str | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    sizes: Sequence[int] = (256, 512)
    batches: Sequence[int] = (1, 8)
    precisions: Sequence[str] = ("float32", "bfloat16")
    repeats: int = 5
    train_images: int = 32
    train_batch: int = 4
    train_size: int = 256
    cache_epochs: int = 3
    data_dir: str | None = None
    threads: int = 2
    gemm_size: int = 4096
    device: str = "cpu"
    work_dir: str = "runs/benchmark"
    isolate: bool = True
    compile: bool = False
    cuda_graphs: bool = False
    onnx: bool = False
    video: bool = False
    time_budget_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.cuda_graphs and self.device != "cuda":
            raise InputError(f"cuda_graphs needs --device cuda (CUDA graphs run on a GPU), got device {self.device!r}")


#: The inference sweep of a GPU run (``segdino bench --device cuda``).
GPU_SWEEP = {"sizes": (256, 512), "batches": (1, 2, 4, 8, 16, 32, 64, 128, 256)}
#: What an H200 should reach with ViT-S/16 at 256x256 (issue 17): images/s at batch 256 in bf16, ms at batch 1.
GPU_TARGETS = {"bf16_batch256_images_per_s": 10_000.0, "batch1_latency_ms": 3.0}


# A few-second run for tests: a tiny DINOv3 of the same architecture, small inputs, one repetition.
QUICK = {
    "backbone_kwargs": {"embed_dim": 48, "depth": 4, "num_heads": 2},
    "repeats": 1,
    "train_images": 8,
    "train_batch": 4,
    "train_size": 64,
    "cache_epochs": 2,
    "sizes": (32,),
    "batches": (2,),
    "gemm_size": 256,
    "isolate": False,
}


def cpu_kind() -> str:
    """This CPU's kind as far as bf16 goes: ``amx``, ``avx512_bf16``, else the vector ISA torch runs (``avx2``, ...)."""
    if torch.cpu._is_amx_tile_supported():
        return "amx"
    if torch.cpu._is_avx512_bf16_supported():
        return "avx512_bf16"
    return torch.backends.cpu.get_cpu_capability().lower()


def native_bf16(config: BenchmarkConfig) -> bool:
    """Whether the benchmark's device runs bf16 natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX)."""
    return use_bf16("auto", torch.device(config.device))


class _Budget:
    """The time left of a run; the steps that would start after it is spent are recorded as skipped."""

    def __init__(self, seconds: float, skipped: list[dict[str, str]]) -> None:
        self.seconds, self.skipped, self.start = seconds, skipped, time.monotonic()

    def allows(self, step: str) -> bool:
        if not self.seconds or time.monotonic() - self.start < self.seconds:
            return True
        self.skipped.append({"step": step, "why": f"the time budget of {self.seconds:g} s was spent"})
        return False


def _setup(config: BenchmarkConfig) -> torch.device:
    torch.set_num_threads(config.threads)
    return torch.device(config.device)


def _network(config: BenchmarkConfig, precision: str = "float32") -> Any:
    from segdino_monai.networks import SegDINO

    return SegDINO(
        backbone=config.backbone,
        weights=config.weights,
        backbone_precision=precision,
        backbone_kwargs=config.backbone_kwargs,
    ).to(config.device)


def _peak_mib(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on GPU; on CPU the resident high-water mark (VmHWM).

    ``getrusage``'s ``ru_maxrss`` is not used on Linux: it survives fork and exec, so a child process would report
    its parent's peak.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_ceiling(config: BenchmarkConfig, precisions: Sequence[str] = ("float32", "bfloat16")) -> dict[str, float]:
    """GFLOP/s of a square matrix multiply in each of ``precisions`` (``float32``, ``bfloat16``)."""
    device = _setup(config)
    n = config.gemm_size
    result = {}
    for name in precisions:
        dtype = getattr(torch, name)
        a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
        seconds = _median_time(lambda a=a, b=b: a @ b, max(2, config.repeats // 2), device)
        result[name] = 2 * n**3 / seconds / 1e9
    return result


def backbone_flops(config: BenchmarkConfig, size: int) -> float:
    """FLOPs of one image through the backbone (matrix multiplies, convolutions and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = _network(config).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.backbone.model.forward_intermediates(
            torch.rand(1, 3, size, size, device=config.device),
            indices=list(net.backbone.taps),
            norm=True,
            intermediates_only=True,
        )
    return float(counter.get_total_flops())


def _compiled(config: BenchmarkConfig, module: torch.nn.Module) -> Callable[[torch.Tensor], Any]:
    """``module`` as timed: itself, through ``torch.compile``, or captured as CUDA graphs."""
    if config.cuda_graphs:
        return torch.compile(module, mode="reduce-overhead")
    return torch.compile(module) if config.compile else module


def inference_speed(config: BenchmarkConfig, size: int, batch: int, precision: str) -> dict[str, float]:
    """Images/s of the backbone alone and of the full network, timed interleaved in this process.

    Also the median time of one full-network batch (``latency_ms``: at batch 1, the latency of one image). With
    ``compile`` or ``cuda_graphs`` the first calls compile (and capture) the network; they are warm-up, not timed.
    """
    device = _setup(config)
    net = _network(config, precision).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    backbone, full = _compiled(config, net.backbone), _compiled(config, net)
    warmup = 3 if config.compile or config.cuda_graphs else 1
    seconds: dict[str, list[float]] = {"backbone": [], "full": []}
    with torch.no_grad():
        for step in range(config.repeats + warmup):
            for name, fn in (("backbone", lambda: backbone(x)), ("full", lambda: full(x))):
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                if step >= warmup:
                    seconds[name].append(time.perf_counter() - start)
    result = {f"{name}_images_per_s": batch / statistics.median(values) for name, values in seconds.items()}
    result["latency_ms"] = 1000 * statistics.median(seconds["full"])
    return result


def inference_memory(config: BenchmarkConfig, size: int, batch: int, precision: str) -> dict[str, float]:
    """Peak memory (MiB) after building the network, after a backbone forward, then after a full forward."""
    device = _setup(config)
    net = _network(config, precision).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    result = {"model_mib": _peak_mib(device)}
    with torch.no_grad():
        net.backbone(x)
        result["peak_backbone_mib"] = _peak_mib(device)
        net(x)
        result["peak_full_mib"] = _peak_mib(device)
    return result


def _training_data(config: BenchmarkConfig) -> list[dict[str, torch.Tensor]]:
    from monai.data import load_decathlon_datalist

    from segdino_monai.data import prepare_datalist
    from segdino_monai.data.demo import make_demo_dataset
    from segdino_monai.workflows.configs import get_transforms

    work = Path(config.work_dir)
    if config.data_dir:
        datalist = work / "datalist.json"
        prepare_datalist(config.data_dir, datalist, layout="generic", val_fraction=0.1, test_fraction=0.1)
    else:
        n = config.train_images + 4
        datalist = make_demo_dataset(work / "demo", "endoscopy", num_images=n, size=(config.train_size,) * 2)
    items = load_decathlon_datalist(str(datalist), data_list_key="training")[: config.train_images]
    _, evaluate = get_transforms("endoscopy", spatial_size=(config.train_size,) * 2)
    return [{"path": item["image"], **evaluate(dict(item))} for item in items]


def training_speed(config: BenchmarkConfig, mode: str) -> dict[str, float]:
    """Samples/s and peak memory of training one way: ``reference``, ``frozen`` or ``cache``."""
    from segdino_monai.workflows.feature_cache import CachedFeatureNetwork, FeatureCacheDataset

    device = _setup(config)
    samples = _training_data(config)
    torch.manual_seed(0)
    net = _network(config).train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # Peak before any training step (libraries, model, data): what each way of training adds is measured from here.
    result: dict[str, float] = {"samples": len(samples), "baseline_mib": _peak_mib(device)}

    def epoch(model: Callable, batches: list[tuple[torch.Tensor, torch.Tensor]], params: list) -> float:
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
        start = time.perf_counter()
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(inputs.to(device)), labels.to(device)).backward()
            optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    def batched(key: str, items: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b = config.train_batch
        chunks = [items[i : i + b] for i in range(0, len(items), b)]
        return [
            (torch.stack([torch.as_tensor(s[key]) for s in c]), torch.stack([s["label"] for s in c])) for c in chunks
        ]

    if mode == "reference":
        # As the reference code trains: the backbone in train mode, inside autograd, optimised with the head.
        net.backbone.model.requires_grad_(True).train()
        taps = list(net.backbone.taps)

        def reference_forward(x: torch.Tensor) -> torch.Tensor:
            maps = net.backbone.model.forward_intermediates(x, indices=taps, norm=True, intermediates_only=True)
            return net.decode(maps, x.shape[-2:])

        seconds = epoch(reference_forward, batched("image", samples), list(net.parameters()))
    elif mode == "frozen":
        seconds = epoch(net, batched("image", samples), [p for p in net.parameters() if p.requires_grad])
    elif mode == "cache":
        lookup = {s["path"]: s for s in samples}
        build_start = time.perf_counter()
        dataset = FeatureCacheDataset(
            [{"image": p} for p in lookup],
            net,
            lambda item: lookup[item["image"]],
            cache_dir=Path(config.work_dir) / "feature_cache",
            batch_size=8,
            description={"benchmark": time.time_ns()},  # a fresh cache: the build is part of what is timed
            progress=False,
        )
        result["cache_build_s"] = time.perf_counter() - build_start
        result["cache_build_views_per_s"] = len(lookup) / result["cache_build_s"]
        model = CachedFeatureNetwork(net)
        params = [p for p in net.parameters() if p.requires_grad]
        epochs = []
        for _ in range(config.cache_epochs):
            start = time.perf_counter()
            items = [dataset[i] for i in range(len(dataset))]  # reading the cache is part of an epoch
            read = time.perf_counter() - start
            epochs.append(read + epoch(model, batched("image", items), params))
        result["first_epoch_s"] = result["cache_build_s"] + epochs[0]
        seconds = statistics.median(epochs[1:] if len(epochs) > 1 else epochs)
        if "bfloat16" in config.precisions and native_bf16(config):
            result["agreement_dice_bf16_vs_fp32"] = _precision_agreement(net, samples, device)
        shutil.rmtree(dataset.folder, ignore_errors=True)
    else:
        raise ValueError(f"mode must be reference, frozen or cache, got {mode!r}")
    result.update({"epoch_s": seconds, "samples_per_s": len(samples) / seconds, "peak_mib": _peak_mib(device)})
    result["added_mib"] = result["peak_mib"] - result["baseline_mib"]
    return result


def _precision_agreement(net: Any, samples: list[dict], device: torch.device) -> float:
    """Dice between the masks of fp32 and bf16-autocast backbones, the same trained decoder, over the samples."""
    net.eval()
    inter = total = 0.0
    with torch.no_grad():
        for sample in samples:
            x = torch.as_tensor(sample["image"])[None].to(device)
            net.backbone.precision = "float32"
            fp32 = net(x) > 0
            net.backbone.precision = "bfloat16"
            bf16 = net(x) > 0
            inter += float((fp32 & bf16).sum())
            total += float(fp32.sum() + bf16.sum())
    net.backbone.precision = "float32"
    return 2 * inter / total if total else 1.0


def _child(function: str, config: BenchmarkConfig, *args: Any) -> dict[str, float]:
    """Run one measurement in a fresh Python process (its own peak memory) and return its result."""
    if not config.isolate:
        return globals()[function](config, *args)
    payload = json.dumps({"function": function, "config": asdict(config), "args": args})
    code = "import sys; from segdino_monai.tools.benchmark import child_main; child_main(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", code, payload], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"benchmark step {function}{args} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(payload: str) -> None:
    logging.disable(logging.WARNING)  # a child's stdout carries its result; the random-backbone warning is known
    request = json.loads(payload)
    config = BenchmarkConfig(**request["config"])
    result = globals()[request["function"]](config, *request["args"])
    print(json.dumps(result))


def run_benchmark(config: BenchmarkConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run every measurement, write ``benchmark.json`` and ``benchmark.md`` into ``out_dir``, return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _setup(config)
    skipped: list[dict[str, str]] = []
    budget = _Budget(config.time_budget_s, skipped)
    precisions = list(config.precisions)
    if "bfloat16" in precisions and not native_bf16(config):
        precisions.remove("bfloat16")
        why = f"this CPU ({cpu_kind()}) has no native bf16 (AVX512-BF16 or AMX): bf16 runs ~100x slower than fp32"
        skipped.append({"step": "bf16 ceiling, bf16 rows and bf16-vs-fp32 mask agreement", "why": why})
    logger.info("sgemm ceiling and FLOPs")
    report: dict[str, Any] = {
        "config": asdict(config),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_kind": cpu_kind(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if config.device == "cuda" else f"CPU, {config.threads} threads",
        },
        "gemm_gflops": gemm_ceiling(config, precisions),
        "backbone_gflop_per_image": {str(s): backbone_flops(config, s) / 1e9 for s in config.sizes},
        "inference": [],
        "training": {},
        "skipped": skipped,
    }
    for size in config.sizes:
        for batch in config.batches:
            for precision in precisions:
                if not budget.allows(f"inference {size}x{size}, batch {batch}, {precision}"):
                    continue
                logger.info("inference %dx%d, batch %d, %s", size, size, batch, precision)
                row = {"size": size, "batch": batch, "precision": precision}
                row.update(inference_speed(config, size, batch, precision))
                row.update(_child("inference_memory", config, size, batch, precision))
                report["inference"].append(row)
    if budget.allows("test-time augmentation"):
        logger.info("test-time augmentation")
        report["tta"] = tta_speed(_network(config).eval(), min(config.sizes), max(config.batches), config.repeats)
    for mode in ("reference", "frozen", "cache"):
        if budget.allows(f"training epoch: {mode}"):
            logger.info("training epoch: %s", mode)
            report["training"][mode] = _child("training_speed", config, mode)
    if config.video and budget.allows("segdino video"):
        from segdino_monai.tools.bench_video import video_speed

        report["video"] = video_speed(config)
    if config.onnx and budget.allows("ONNX Runtime vs PyTorch"):
        from segdino_monai.tools.bench_onnx import onnx_speed

        report["onnx"] = onnx_speed(config)
    report["summary"] = summary_ratios(report)
    text, table = json.dumps(report, indent=2), markdown_table(report)
    atomic_write(out / "benchmark.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    atomic_write(out / "benchmark.md", lambda tmp: Path(tmp).write_text(table, encoding="utf-8"))
    return report


def _ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` where undefined (no memory added in a quick in-process run)."""
    return numerator / denominator if denominator > 0 else None


def summary_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    """The ratios the targets are stated in."""
    rows = {(r["size"], r["batch"], r["precision"]): r for r in report["inference"]}
    train = report["training"]
    size = min((r["size"] for r in report["inference"]), default=None)
    batch = max((r["batch"] for r in report["inference"]), default=None)
    fp32 = rows.get((size, batch, "float32"))
    bf16 = rows.get((size, batch, "bfloat16"))
    summary: dict[str, float | None] = {}
    for way in ("cache", "frozen"):
        if way in train and "reference" in train:
            ref = train["reference"]
            summary[f"{way}_vs_reference_speed"] = _ratio(train[way]["samples_per_s"], ref["samples_per_s"])
            summary[f"{way}_vs_reference_peak_memory"] = _ratio(train[way]["peak_mib"], ref["peak_mib"])
            summary[f"{way}_vs_reference_training_memory"] = _ratio(train[way]["added_mib"], ref["added_mib"])
    if "cache" in train and "frozen" in train:
        summary["cache_vs_frozen_speed"] = _ratio(train["cache"]["samples_per_s"], train["frozen"]["samples_per_s"])
    if "agreement_dice_bf16_vs_fp32" in train.get("cache", {}):
        summary["bf16_vs_fp32_mask_dice"] = train["cache"]["agreement_dice_bf16_vs_fp32"]
    if fp32:
        summary["full_vs_backbone_speed_fp32"] = fp32["full_images_per_s"] / fp32["backbone_images_per_s"]
        flops = report["backbone_gflop_per_image"][str(size)] * 1e9
        summary["fp32_fraction_of_sgemm"] = fp32["full_images_per_s"] * flops / (report["gemm_gflops"]["float32"] * 1e9)
    if fp32 and bf16:
        summary["bf16_vs_fp32_speed"] = bf16["full_images_per_s"] / fp32["full_images_per_s"]
    if bf16:
        flops = report["backbone_gflop_per_image"][str(size)] * 1e9
        summary["bf16_fraction_of_bf16_gemm"] = (
            bf16["full_images_per_s"] * flops / (report["gemm_gflops"]["bfloat16"] * 1e9)
        )
        summary[f"bf16_batch{batch}_images_per_s"] = bf16["full_images_per_s"]
    single = [r for r in report["inference"] if r["size"] == size and r["batch"] == 1]
    if single:
        summary["batch1_latency_ms"] = min(r["latency_ms"] for r in single)
    if "cache" in train:
        summary["cache_build_views_per_s"] = train["cache"]["cache_build_views_per_s"]
    return summary


def markdown_table(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    gemm, machine = report["gemm_gflops"], report["machine"]
    lines = [
        f"Machine: {machine['device']}, {machine['cpu']} ({machine['cpu_kind']}), torch {machine['torch']}. "
        f"sgemm {report['config']['gemm_size']}^3: "
        + ", ".join(f"{v:.0f} GFLOP/s {'fp32' if k == 'float32' else 'bf16'}" for k, v in gemm.items())
        + ". Backbone: "
        + ", ".join(f"{v:.2f} GFLOP/image at {k}x{k}" for k, v in report["backbone_gflop_per_image"].items()),
        "",
        "| size | batch | precision | backbone img/s | full img/s | full/backbone | ms per batch | peak MiB backbone "
        "| peak MiB full |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["inference"]:
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['precision']} | {r['backbone_images_per_s']:.2f} | "
            f"{r['full_images_per_s']:.2f} | {r['full_images_per_s'] / r['backbone_images_per_s']:.3f} | "
            f"{r['latency_ms']:.2f} | {r['peak_backbone_mib']:.0f} | {r['peak_full_mib']:.0f} |"
        )
    if "tta" in report:
        lines += tta_markdown(report["tta"])
    lines += [
        "",
        "| training | samples/s | epoch s | peak MiB | added by training MiB | notes |",
        "|---|---|---|---|---|---|",
    ]
    names = {"reference": "(a) reference-style", "frozen": "(b) frozen, no_grad", "cache": "(c) feature cache"}
    for mode, r in report["training"].items():
        note = f"first epoch incl. build {r['first_epoch_s']:.1f} s" if mode == "cache" else ""
        lines.append(
            f"| {names[mode]} | {r['samples_per_s']:.2f} | {r['epoch_s']:.2f} | {r['peak_mib']:.0f} | "
            f"{r['added_mib']:.0f} | {note} |"
        )
    if report["skipped"]:
        lines += ["", "| skipped | why |", "|---|---|"]
        lines += [f"| {s['step']} | {s['why']} |" for s in report["skipped"]]
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {'n/a' if v is None else f'{v:.3f}'} |" for k, v in report["summary"].items()]
    if report["config"]["device"] == "cuda":
        lines += ["", "| H200 target (ViT-S/16, 256x256) | target | measured |", "|---|---|---|"]
        for key, target in GPU_TARGETS.items():
            value = next((v for k, v in report["summary"].items() if k == key), None)
            lines.append(f"| {key} | {target:g} | {'n/a' if value is None else f'{value:.2f}'} |")
    if "video" in report:
        from segdino_monai.tools.bench_video import markdown_section

        lines += markdown_section(report["video"])
    if "onnx" in report:
        from segdino_monai.tools.bench_onnx import onnx_table

        lines += onnx_table(report["onnx"], report["config"]["threads"])
    return "\n".join(lines) + "\n"
