"""Peak memory and time of ``segdino infer`` (and ``segdino evaluate``) on large synthetic photos.

Each case runs ``segdino`` in a fresh process (this script with ``--child``), which reads its own peak resident
memory (``VmHWM`` of ``/proc/self/status``) when the command is done: ``getrusage``'s ``ru_maxrss`` would report
the parent's peak after a fork. The backbone has RANDOM weights (memory and time do not depend on them) and the
decoder checkpoint is random: ``--backbone tiny`` (default) is the tests' tiny DINOv3 (width 48, depth 4), so the
numbers show the image pipeline rather than the network (and the sliding window over a 24 MP photo takes seconds,
not a quarter of an hour on 2 cores); ``--backbone vits16`` is the bundle's default ViT-S/16. The data loader runs
in the main process (``num_workers=0``), so the whole pipeline is in the measured process; 2 CPU threads.

``--src`` runs the commands from another checkout (e.g. ``git archive`` of the commit before a change), to measure
before and after side by side; the images and checkpoint are the same for both.

    python scripts/bench_large_images.py --out runs/bench_large --src /tmp/before --label before
    python scripts/bench_large_images.py --out runs/bench_large --label after

Writes ``<out>/large_images_<label>.json`` and, when both labels are there, ``<out>/large_images.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"3000x2000": (2000, 3000), "6000x4000": (4000, 6000)}  # name: (height, width)
MODALITIES = ("endoscopy", "dermoscopy")
MODES = ("resize", "native")
TINY_VIT = {"embed_dim": 48, "depth": 4, "num_heads": 2}  # tests/conftest.py's TINY_VIT


def _vmhwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(result: Path, argv: list[str]) -> int:
    """Run ``segdino <argv>`` in this process; write its exit status, wall time and peak memory to ``result``."""
    import torch

    torch.set_num_threads(2)
    from segdino_monai.cli import main

    start = time.perf_counter()
    try:
        status = main(argv)
    except SystemExit as err:  # the CLI exits 2 on bad input
        status = int(err.code or 0)
    result.write_text(json.dumps({"rc": status, "seconds": time.perf_counter() - start, "peak_mib": _vmhwm_mib()}))
    return 0


def _make_inputs(work: Path, backbone: str) -> dict[str, Path]:
    """One JPEG (quality 90) per modality and size, with its 0/255 PNG mask; a random vits16 decoder checkpoint."""
    import numpy as np
    import torch
    from PIL import Image

    from segdino_monai.data.demo import make_demo_image
    from segdino_monai.networks import SegDINO

    ckpt = work / f"models_{backbone}" / "model.pt"
    if not ckpt.is_file():
        torch.manual_seed(0)
        kwargs = TINY_VIT if backbone == "tiny" else None
        SegDINO(out_channels=1, backbone="vits16", weights=None, backbone_kwargs=kwargs).save_decoder(ckpt)
    folders = {}
    for size_name, (height, width) in SIZES.items():
        for modality in MODALITIES:
            folder = work / "data" / f"{modality}_{size_name}"
            folders[f"{modality}_{size_name}"] = folder
            if (folder / "images" / "photo.jpg").is_file():
                continue
            (folder / "images").mkdir(parents=True, exist_ok=True)
            (folder / "masks").mkdir(parents=True, exist_ok=True)
            # the demo generator at 1/4 size (its float64 filters at 24 MP would take minutes), upscaled with
            # Pillow's bicubic filter, plus fine noise so that the JPEG is as large as a real photo's
            image, mask = make_demo_image(modality, (height // 4, width // 4), seed=0)
            big = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC), np.int16)
            big = big + np.random.default_rng(0).integers(-6, 7, big.shape, dtype=np.int16)
            Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(folder / "images" / "photo.jpg", quality=90)
            big_mask = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
            big_mask.save(folder / "masks" / "photo.png")
            pair = {"image": "images/photo.jpg", "label": "masks/photo.png"}
            datalist = {"training": [], "validation": [], "test": [pair]}
            (folder / "datalist.json").write_text(json.dumps(datalist))
    return folders


def _run(src: Path, work: Path, name: str, argv: list[str]) -> dict:
    result = work / "results" / f"{name}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(result), "--", *argv]
    log = work / "results" / f"{name}.log"
    with open(log, "w") as out:
        subprocess.run(cmd, env=env, cwd=str(src), stdout=out, stderr=subprocess.STDOUT, check=False)
    data = json.loads(result.read_text()) if result.is_file() else {"rc": None, "seconds": None, "peak_mib": None}
    print(f"{name}: {data}", flush=True)
    return data


def bench(out: Path, src: Path, label: str, only: str | None, backbone: str) -> dict:
    work = out / "work"
    folders = _make_inputs(work, backbone)
    common = ["--bundle-root", str(src / "bundle"), "--backbone", "vits16", "--backbone-weights", "random"]
    common += ["--ckpt-dir", str(work / f"models_{backbone}")]
    if backbone == "tiny":
        common += ["--set", f"network_def#backbone_kwargs={TINY_VIT!r}"]
    rows = {}
    for size_name in SIZES:
        for modality in MODALITIES:
            folder = folders[f"{modality}_{size_name}"]
            for mode in MODES:
                name = f"infer_{modality}_{size_name}_{mode}"
                if only and only not in name:
                    continue
                output = work / "out" / label / name
                argv = ["infer", *common, "--modality", modality, "--mode", mode, "--set", "dataloader#num_workers=0"]
                argv += ["--dataset-dir", str(folder / "images"), "--output-dir", str(output)]
                rows[name] = _run(src, work, f"{label}_{name}", argv)
            name = f"evaluate_{modality}_{size_name}"
            if only and only not in name:
                continue
            argv = ["evaluate", *common, "--modality", modality, "--datalist", str(folder / "datalist.json")]
            argv += ["--set", "num_workers=0", "--output-dir", str(work / "out" / label / name)]
            rows[name] = _run(src, work, f"{label}_{name}", argv)
    name = "tiny DINOv3 (width 48, depth 4)" if backbone == "tiny" else "ViT-S/16"
    report = {"label": label, "src": str(src), "threads": 2, "backbone": f"{name}, random weights", "rows": rows}
    (out / f"large_images_{label}.json").write_text(json.dumps(report, indent=2))
    return report


def table(out: Path) -> str | None:
    """The markdown table of the ``before`` and ``after`` results side by side, when both exist."""
    files = {label: out / f"large_images_{label}.json" for label in ("before", "after")}
    if not all(f.is_file() for f in files.values()):
        return None
    data = {label: json.loads(f.read_text())["rows"] for label, f in files.items()}
    lines = [
        "| command | input | modality | mode | peak MiB before | peak MiB after | s before | s after |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(row: dict, key: str, digits: int) -> str:
        if row.get("rc") not in (0, None) or row.get(key) is None:
            return f"failed (exit {row.get('rc')})"
        return f"{row[key]:.{digits}f}"

    for name in data["after"]:
        parts = name.split("_")
        before, after = data["before"].get(name, {}), data["after"][name]
        mode = parts[3] if parts[0] == "infer" else "resize"
        lines.append(
            f"| {parts[0]} | {parts[2]} | {parts[1]} | {mode} | {cell(before, 'peak_mib', 0)} | "
            f"{cell(after, 'peak_mib', 0)} | {cell(before, 'seconds', 1)} | {cell(after, 'seconds', 1)} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "large_images.md").write_text(text)
    return text


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(Path(sys.argv[2]), sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_large"), help="output folder")
    parser.add_argument("--src", type=Path, default=ROOT, help="the checkout whose segdino is measured")
    parser.add_argument("--label", default="after", help="name of this run (before/after)")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    parser.add_argument("--backbone", choices=["tiny", "vits16"], default="tiny", help="random backbone size")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bench(args.out.resolve(), args.src.resolve(), args.label, args.only, args.backbone)
    text = table(args.out)
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
