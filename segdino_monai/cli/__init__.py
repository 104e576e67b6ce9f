"""The ``segdino`` command: one entry point, one sub-command per task."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segdino_monai.utils.errors import finish_worker_threads, input_error_message, interrupted

if TYPE_CHECKING:
    from segdino_monai.services.dicom_batch import RunSummary

__all__ = ["main", "build_parser"]

logger = logging.getLogger("segdino_monai")


def _check_weights(args: argparse.Namespace) -> int:
    from segdino_monai.networks import DINOv3Backbone
    from segdino_monai.networks.weights.checkpoint_layouts import weights_file
    from segdino_monai.networks.weights.hashes import file_sha256, name_hash_prefix

    backbone = DINOv3Backbone(args.backbone, weights=args.weights)
    params = sum(p.numel() for p in backbone.model.parameters())
    logger.info(
        "%s loads into %s: %d parameters, embed_dim %d, taps %s",
        args.weights,
        backbone.arch,
        params,
        backbone.embed_dim,
        list(backbone.taps),
    )
    path = weights_file(args.weights)
    prefix = name_hash_prefix(path)
    checked = f"matches the {prefix} in its name" if prefix else "no hash in its name: compare it with the publisher's"
    logger.info("%s SHA-256 %s (%s)", path, file_sha256(path), checked)
    return 0


def _prepare_data(args: argparse.Namespace) -> int:
    from segdino_monai.data import prepare_datalist

    prepare_datalist(
        args.folder,
        args.output,
        layout=args.layout,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        skip_bad=args.skip_bad,
        mask_suffixes=args.mask_suffix,
    )
    return 0


def _make_demo_data(args: argparse.Namespace) -> int:
    from segdino_monai.data.demo import make_demo_dataset

    path = make_demo_dataset(args.out_dir, args.modality, args.num_images, args.size, args.seed)
    logger.info("demo datalist: %s", path)
    return 0


def _bench(args: argparse.Namespace) -> int:
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


def _export(args: argparse.Namespace) -> int:
    from segdino_monai.tools.export import ExportMismatch, check_export, export_network, load_bundle_network

    path = check_export(args.output, args.format)  # a bad output stops the command before the model loads
    overrides = _set_overrides(args.set)
    if args.modality:
        overrides["modality"] = args.modality
    network, info = load_bundle_network(args.bundle_root, args.backbone_weights, args.checkpoint, overrides)
    try:
        export_network(network, path, args.format, args.image_size, args.tolerance, info)
    except ExportMismatch as err:
        logger.error("%s", err)
        return 1
    return 0


def _run_bundle(args: argparse.Namespace) -> int:
    from segdino_monai.utils.errors import InputError
    from segdino_monai.workflows.runner import run_bundle

    overrides = {
        "dataset_dir": args.dataset_dir,
        "modality": args.modality,
        "backbone": args.backbone,
        "backbone_weights": args.backbone_weights,
        "num_classes": args.num_classes,
        "spatial_size": args.spatial_size,
        "output_dir": args.output_dir,
        "ckpt_dir": args.ckpt_dir,
    }
    if args.command in ("train", "evaluate"):
        overrides["datalist"] = args.datalist
    if args.command == "train":
        overrides.update({"train#trainer#max_epochs": args.epochs, "resume": args.resume or None})
        overrides.update({"learning_rate": args.learning_rate, "batch_size": args.batch_size})
    if args.command == "evaluate":
        overrides.update({"eval_split": args.split, "save_predictions": args.save_predictions or None})
    if args.command == "infer":
        overrides.update({"inference_mode": args.mode, "save_nifti": args.nifti or None})
        overrides.update({"largest_component": args.largest_component or None, "fill_holes": args.fill_holes or None})
    if args.command in ("train", "evaluate"):
        if args.tracking_uri and not args.tracking:
            raise InputError("--tracking-uri needs --tracking mlflow (or a MONAI tracking settings file)")
        overrides["tracking_uri"] = args.tracking_uri
    overrides.update(_set_overrides(args.set))
    preset, tracking = getattr(args, "preset", "default"), getattr(args, "tracking", None)
    return run_bundle(args.command, args.bundle_root, overrides, preset=preset, tracking=tracking)


def _set_overrides(items: Sequence[str] | None) -> dict[str, object]:
    """``--set ID=VALUE`` options as config overrides; values are Python literals where they parse as one.

    Booleans may be typed as people type them (``--set resume=false``): the configs read them with ``as_bool``.
    """
    from segdino_monai.utils.errors import InputError

    overrides: dict[str, object] = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InputError(f"--set takes ID=VALUE (e.g. --set feature_cache=true), got {item!r}.")
        overrides[key.strip()] = _literal(value)
    return overrides


def _report(args: argparse.Namespace) -> int:
    from segdino_monai.reporting import write_report

    write_report(args.run_dir, args.predictions_dir, args.epoch_metrics, args.cases)
    return 0


def _distributed() -> dict[str, str]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): join the process group; the config override of this process's GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return {}
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(dist.destroy_process_group)
    if not torch.cuda.is_available():
        return {}
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return {"device": f"$torch.device('cuda:{int(os.environ['LOCAL_RANK'])}')"}


def _dicom(args: argparse.Namespace) -> int:
    from segdino_monai.dicom.seg import DEFAULT_TASK, SEGMENT_TASKS, SegOptions
    from segdino_monai.services.dicom_batch import DicomSegmenter, run_dicom
    from segdino_monai.services.dicom_inputs import check_frames, check_output, find_inputs
    from segdino_monai.services.dicomweb import STAGING_FOLDER, TOKEN_ENV, check_stow_url, is_url, retrieve
    from segdino_monai.services.staging import Terminated, sigterm_as_interrupt
    from segdino_monai.utils.errors import InputError

    urls = [item for item in args.inputs if is_url(item)]
    local = [item for item in args.inputs if not is_url(item)]
    token = args.dicomweb_token or os.environ.get(TOKEN_ENV) or None
    overrides = {key: _literal(value) for key, _, value in (item.partition("=") for item in args.set or [])}
    overrides.update(_distributed())
    logging.getLogger("highdicom").setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    with sigterm_as_interrupt():
        try:
            # bad inputs, output folder or frames stop the command before the model loads
            frames = check_frames([n for group in args.frames for n in group]) if args.frames else None
            if args.task is not None and args.task not in SEGMENT_TASKS:
                raise InputError(f"--task {args.task}: unknown task; choose one of {', '.join(SEGMENT_TASKS)}")
            check_output(args.output, local)
            if local:
                find_inputs(local, exclude=[args.output])
            stow_root = check_stow_url(args.stow_url, token) if args.stow_url else None
            retrieved = [path for url in urls for path in retrieve(url, Path(args.output) / STAGING_FOLDER, token)]
            segmenter = DicomSegmenter(
                args.bundle_root, args.backbone_weights, args.checkpoint, args.modality, overrides
            )
            options = SegOptions(
                task=args.task or DEFAULT_TASK.get(segmenter.modality, "lesion"),
                segmentation_type="LABELMAP" if args.labelmap else "BINARY",
                series_description=args.series_description,
                series_number=args.series_number,
                content_creator_name=args.content_creator,
                also_sc=args.also_sc,
                also_sr=args.also_sr,
            )
            summary = run_dicom(
                [*local, *retrieved], args.output, segmenter, args.overwrite, frames, options, not args.no_progress
            )
        except KeyboardInterrupt as err:
            how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted (Ctrl-C)"
            logger.error(
                "segdino dicom %s: finished instances are kept in %s and unfinished ones removed; run the same "
                "command again to finish",
                how,
                args.output,
            )
            return 143 if isinstance(err, Terminated) else 130
    if stow_root is None or int(os.environ.get("RANK", "0")) != 0:  # under torchrun, the first process stores
        return 0 if summary.ok else 1
    return 0 if _stow(summary, args.output, stow_root, token) and summary.ok else 1


def _stow(summary: RunSummary, output: str, root: str, token: str | None) -> bool:
    """Store the DICOM results of the finished instances by STOW-RS, recorded in ``summary.json``; True if all were."""
    from segdino_monai.services.dicomweb import record_in_summary, store_results

    finished = summary.processed + summary.fallback + summary.done
    result = store_results(finished, root, token)
    record_in_summary(output, "stow", result.as_dict())
    return result.ok


def _dicom_node(args: argparse.Namespace) -> int:
    from segdino_monai.dicom.seg import DEFAULT_TASK, SEGMENT_TASKS, SegOptions
    from segdino_monai.services.dicom_batch import DicomSegmenter
    from segdino_monai.services.node import DicomNode, serve
    from segdino_monai.services.sender import Destination
    from segdino_monai.utils.errors import InputError

    forward = Destination.parse(args.forward)  # bad options stop the command before the model loads
    if args.task is not None and args.task not in SEGMENT_TASKS:
        raise InputError(f"--task {args.task}: unknown task; choose one of {', '.join(SEGMENT_TASKS)}")
    allowed = [aet.strip() for aet in (args.allowed_aets or "").split(",") if aet.strip()]
    logging.getLogger("highdicom").setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    overrides = _set_overrides(args.set)
    segmenter = DicomSegmenter(args.bundle_root, args.backbone_weights, args.checkpoint, args.modality, overrides)
    options = SegOptions(
        task=args.task or DEFAULT_TASK.get(segmenter.modality, "lesion"), also_sc=args.also_sc, also_sr=args.also_sr
    )
    node = DicomNode(
        segmenter,
        args.store_dir,
        forward,
        args.aet,
        args.host,
        args.port,
        allowed,
        options,
        send_attempts=args.send_attempts,
        max_backoff=args.max_backoff,
    )
    serve(node)
    return 0


def _video(args: argparse.Namespace) -> int:
    from segdino_monai.services.dicom_batch import DicomSegmenter
    from segdino_monai.services.dicom_inputs import check_output
    from segdino_monai.services.video import FrameRange, VideoSegmenter, find_videos, run_video

    frames = FrameRange(args.start, args.end, args.every)  # bad options stop the command before the model loads
    check_output(args.output, args.inputs)
    find_videos(args.inputs)
    overrides = _set_overrides(args.set)
    overrides.update(_distributed())  # under torchrun: the inputs are dealt out between the processes
    segmenter = DicomSegmenter(args.bundle_root, args.backbone_weights, args.checkpoint, args.modality, overrides)
    _, errors = run_video(
        args.inputs, args.output, VideoSegmenter(segmenter, args.batch_size), frames, args.masks, not args.no_progress
    )
    return 1 if errors else 0


def _frame_numbers(value: str) -> list[int]:
    """``--frames`` values as people type them: ``5``, ``1,15,30``, ``10-20`` (numbers from 1)."""
    numbers: list[int] = []
    try:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            first, dash, last = part.partition("-") if not part.startswith("-") else (part, "", "")
            low = int(first)
            high = int(last) if dash else low
            if low < 1 or high < low:
                raise ValueError
            numbers.extend(range(low, high + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: frame numbers start at 1; give numbers, lists (1,15,30) or ranges (10-20)"
        ) from None
    if not numbers:
        raise argparse.ArgumentTypeError(f"{value!r}: no frame number")
    return numbers


def _label_env(args: argparse.Namespace) -> int:
    from segdino_monai.apps.monailabel.environment import ensure_label_env

    try:
        ensure_label_env(args.path, python=args.python, force=args.force)
    except RuntimeError as err:  # pip failed (no registry, no disk space): the environment, not the input; logged
        logger.error("%s", err)
        return 1
    return 0


def _label_server(args: argparse.Namespace) -> int:
    from segdino_monai.apps.monailabel import server

    overrides = {key: _literal(value) for key, _, value in (item.partition("=") for item in args.set or [])}
    bundle_root = args.bundle_root or _default_bundle_root()
    server.start(
        args.studies,
        args.env,
        args.app_dir,
        bundle_root,
        backbone_weights=args.backbone_weights,
        overrides=overrides,
        host=args.host,
        port=args.port,
        search_filter=_search_filter(args.search_filter),
    )
    return 0


def _search_filter(value: str | None) -> dict[str, object] | None:
    import json

    from segdino_monai.utils.errors import InputError

    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not parsed:
        example = json.dumps({"Modality": "US"})
        raise InputError(f"--search-filter {value!r}: give a JSON object of QIDO-RS keys, e.g. '{example}'")
    return parsed


def _default_bundle_root() -> str:
    from segdino_monai.workflows.configs import find_bundle_root

    return find_bundle_root()


def _literal(value: str) -> object:
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _add_bundle_command(commands: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=f"{help_text}. Runs the bundle's {name} workflow.")
    parser.add_argument("--bundle-root", help="the bundle folder (default: ./bundle or .)")
    parser.add_argument("--dataset-dir", help="dataset folder (train/evaluate) or image folder (infer); default: demo")
    parser.add_argument("--modality", choices=["ultrasound", "endoscopy", "dermoscopy"], help="preprocessing preset")
    parser.add_argument("--backbone", help="vits16, vits16plus, vitb16, vitl16 or vith16plus")
    parser.add_argument("--backbone-weights", help="DINOv3 weights file, or 'random' (tests only)")
    parser.add_argument("--num-classes", type=int, help="1 for binary, N for N classes with background")
    parser.add_argument("--spatial-size", type=int, nargs=2, metavar=("H", "W"), help="model input size")
    parser.add_argument("--output-dir", help="where logs, metrics and predictions go")
    parser.add_argument("--ckpt-dir", help="where model.pt and the training checkpoints are")
    parser.add_argument("--set", action="append", metavar="ID=VALUE", help="any other config override, repeatable")
    parser.set_defaults(func=_run_bundle)
    if name in ("train", "evaluate"):
        parser.add_argument("--datalist", help="datalist JSON (from `segdino prepare-data`)")
        parser.add_argument(
            "--preset",
            choices=["default", "paper"],
            default="default",
            help="paper: the SegDINO paper's protocol (bundle/configs/paper.json: BCE, lr 1e-4, 50 epochs, no "
            "augmentation, scored at 256x256); see docs/reproduce.md",
        )
        parser.add_argument(
            "--tracking",
            help="MONAI's experiment tracking: 'mlflow' (pip install 'segdino-monai[tracking]'), or a MONAI tracking "
            "settings file; more of its settings with --set (experiment_name=..., run_name=...)",
        )
        parser.add_argument(
            "--tracking-uri", help="MLflow tracking URI (default: sqlite:///<output dir>/mlruns.db); needs --tracking"
        )
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose the model of ``segdino dicom``, ``video`` and ``dicom-node`` (the bundle's)."""
    parser.add_argument("--bundle-root", help="the bundle folder (default: ./bundle or .)")
    parser.add_argument("--backbone-weights", help="DINOv3 weights file (default: the bundle's), or 'random' (tests)")
    parser.add_argument("--checkpoint", help="decoder checkpoint (default: <bundle>/models/model.pt)")
    parser.add_argument("--modality", choices=["ultrasound", "endoscopy", "dermoscopy"], help="preprocessing preset")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="segdino", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check-weights", help="check that DINOv3 weights load exactly, and print the file's SHA-256"
    )
    check.add_argument(
        "weights",
        help="Meta's .pth or timm's .pth/.safetensors DINOv3 weights file, or a Hugging Face snapshot folder "
        "(config.json and model.safetensors) or its model.safetensors",
    )
    check.add_argument("--backbone", default="vits16", help="vits16, vits16plus, vitb16, vitl16 or vith16plus")
    check.set_defaults(func=_check_weights)

    prepare = commands.add_parser(
        "prepare-data",
        help="check a dataset folder and write its MONAI datalist JSON (training/validation/test)",
        description="Pair images with masks, check every file (unpaired, unreadable, size mismatch) and write a "
        "datalist JSON with paths relative to it. Official splits are kept; missing ones are drawn from the seed.",
    )
    prepare.add_argument("folder", help="the dataset folder")
    prepare.add_argument("-o", "--output", required=True, help="the datalist JSON to write")
    prepare.add_argument(
        "--layout", default="auto", help="auto (detect), kvasir, cvc, isic, tn3k, busi, ddti or generic (default auto)"
    )
    prepare.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    prepare.add_argument("--val-fraction", type=float, default=0.1, help="validation share (default 0.1)")
    prepare.add_argument("--test-fraction", type=float, default=0.2, help="test share (default 0.2)")
    prepare.add_argument("--skip-bad", action="store_true", help="leave out bad pairs (logged) instead of failing")
    prepare.add_argument(
        "--mask-suffix",
        action="append",
        metavar="SUFFIX",
        help="accepted mask name suffix, repeatable, '' for same-name masks (default: the layout's own)",
    )
    prepare.set_defaults(func=_prepare_data)

    demo = commands.add_parser("make-demo-data", help="write a small synthetic dataset with its datalist JSON")
    demo.add_argument("out_dir", help="the folder to write into")
    demo.add_argument("--modality", default="endoscopy", choices=["ultrasound", "endoscopy", "dermoscopy"])
    demo.add_argument("-n", "--num-images", type=int, default=12, help="number of image/mask pairs (default 12)")
    demo.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="image size")
    demo.add_argument("--seed", type=int, default=0, help="seed (same seed, same files)")
    demo.set_defaults(func=_make_demo_data)

    bench = commands.add_parser("bench", help="measure inference and training speed and memory (JSON + markdown)")
    bench.add_argument("--out", type=Path, default=Path("runs/benchmark"), help="output folder")
    bench.add_argument("--backbone", default="vits16", help="DINOv3 size")
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
    bench.set_defaults(func=_bench)

    export = commands.add_parser(
        "export",
        help="export the inference network (backbone and folded head) to ONNX or TorchScript, validated",
        description="Export the network of the bundle's inference.json with the trained decoder, in float32, to ONNX "
        "(dynamic batch, height and width; checked by onnx.checker) or TorchScript (traced; dynamic batch), then run "
        "it (ONNX Runtime on the CPU, or the reloaded TorchScript) against PyTorch on random batches: the file is "
        "kept only if the logits agree within --tolerance and the masks are equal (exit 1 otherwise, nothing "
        "written). Inputs: RGB on 0..1 normalised by ImageNet mean/std, sides multiples of 16; outputs: logits.",
    )
    export.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="default onnx")
    export.add_argument("-o", "--output", required=True, help="the file to write (model.onnx, model.ts)")
    _add_model_options(export)
    export.add_argument(
        "--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="example size (default 256)"
    )
    export.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest accepted absolute logit difference (default 1e-4)"
    )
    export.add_argument("--set", action="append", metavar="ID=VALUE", help="any other bundle config override")
    export.set_defaults(func=_export)

    train = _add_bundle_command(commands, "train", "train the decoder")
    train.add_argument("--epochs", type=int, help="number of epochs")
    train.add_argument("--learning-rate", type=float, help="AdamW learning rate")
    train.add_argument("--batch-size", type=int, help="batch size")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --ckpt-dir")
    evaluate_help = "evaluate model.pt (Dice, IoU, HD95 at original resolution; at model size with --preset paper)"
    evaluate = _add_bundle_command(commands, "evaluate", evaluate_help)
    evaluate.add_argument("--split", choices=["test", "validation", "training"], help="datalist split (default test)")
    evaluate.add_argument("--save-predictions", action="store_true", help="also write masks and overlays")
    infer = _add_bundle_command(commands, "infer", "segment a folder of images")
    infer.add_argument("--mode", choices=["resize", "native"], help="resize to the model size, or sliding window")
    infer.add_argument("--nifti", action="store_true", help="also write NIfTI masks")
    infer.add_argument("--largest-component", action="store_true", help="keep the largest connected component")
    infer.add_argument("--fill-holes", action="store_true", help="fill holes in the masks")
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
    report.set_defaults(func=_report)
    dicom = commands.add_parser(
        "dicom",
        help="segment DICOM images: DICOM SEG, PNG masks and overlays, NIfTI and a JSON report per instance",
        description="Run the bundle's inference on every image instance in the inputs (files, folders searched "
        "recursively, DICOMDIR) and write OUT/<SOPInstanceUID>/: a DICOM SEG (one frame per frame of a cine loop), "
        "PNG masks and overlays, NIfTI and report.json; a subset of a cine's frames (--frames) gets per-frame PNG "
        "masks and a frames.json sidecar instead of a SEG. Bad files are listed and skipped (exit 1); "
        "a missing input, a folder with nothing to segment or an output folder inside an input folder stop the "
        "command (exit 2). After Ctrl-C or SIGTERM, rerun the same command to finish. DICOMweb study or series URLs "
        "are retrieved (QIDO-RS/WADO-RS) into OUT/dicomweb/ and segmented like files; --stow-url stores the SEGs on a "
        "DICOMweb server (STOW-RS): an instance whose results were not stored makes the exit status 1.",
    )
    dicom.add_argument(
        "inputs",
        nargs="+",
        help="DICOM files or folders (also NIfTI/MHA/NRRD 2D files), or DICOMweb study/series URLs "
        "(http(s)://HOST/.../dicom-web/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>])",
    )
    dicom.add_argument("-o", "--output", required=True, help="output folder")
    _add_model_options(dicom)
    dicom.add_argument(
        "--stow-url",
        metavar="URL",
        help="also store every DICOM result (the SEGs) by STOW-RS on this DICOMweb server (http(s)://HOST/dicom-web)",
    )
    dicom.add_argument(
        "--dicomweb-token",
        metavar="TOKEN",
        help="bearer token for the DICOMweb server of the URL inputs and --stow-url (default: $SEGDINO_DICOMWEB_TOKEN)",
    )
    dicom.add_argument("--task", help="segment description: polyp, thyroid-nodule, breast-lesion, skin-lesion, lesion")
    dicom.add_argument(
        "--frames",
        type=_frame_numbers,
        nargs="+",
        metavar="N",
        help="frame numbers (from 1) of multi-frame files: 5, 1,15,30 or 10-20; a multi-frame file without one of "
        "them is skipped with the reason; single-frame images are segmented whole",
    )
    dicom.add_argument("--labelmap", action="store_true", help="write LABELMAP SEG instead of BINARY")
    dicom.add_argument("--series-description", default="SegDINO segmentation", help="SEG series description")
    dicom.add_argument("--series-number", type=int, default=901, help="SEG series number")
    dicom.add_argument("--content-creator", default="SegDINO^Algorithm", help="SEG content creator (person name)")
    _add_derived_object_options(dicom)
    dicom.add_argument("--overwrite", action="store_true", help="redo instances whose outputs exist")
    dicom.add_argument("--no-progress", action="store_true", help="no progress bar")
    dicom.add_argument("--set", action="append", metavar="ID=VALUE", help="any other bundle config override")
    dicom.set_defaults(func=_dicom)
    video = commands.add_parser(
        "video",
        help="segment video files and DICOM cine loops: an overlay video and a per-frame CSV per input",
        description="Run the bundle's inference on every frame of each video (.mp4, .avi, .mkv, .mov) or multi-frame "
        "DICOM (cine loop; folders searched recursively) in batches, streaming, and write OUT/<stem>/overlay.mp4 "
        "(H.264, same frame rate and size; a DICOM's from its Frame Time, Frame Time Vector, Cine Rate or "
        "Recommended Display Frame Rate, else 25/s) and frames.csv (frame, time_s, area_pixels, area_mm2 where the "
        "pixel size is known (DICOM), mean_probability, mask_empty). Temporal smoothing is on "
        "(--set temporal_smoothing=false turns it off). A bad or truncated input is reported with the frame reached, "
        "its outputs keep the frames before it, and the next input follows (exit 1).",
    )
    video.add_argument("inputs", nargs="+", help="video files, multi-frame DICOM files or folders")
    video.add_argument("-o", "--output", required=True, help="output folder")
    _add_model_options(video)
    video.add_argument("--every", type=int, default=1, metavar="N", help="segment every N-th frame (default 1)")
    video.add_argument(
        "--start", default="0", help="first frame: a frame number from 0 (30) or seconds (1.5s); default 0"
    )
    video.add_argument("--end", help="end (excluded): a frame number (90) or seconds (3s); default the last frame")
    video.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    video.add_argument(
        "--masks", choices=["png", "video"], help="also write masks/frame_NNNNNN.png or masks.mkv (lossless FFV1)"
    )
    video.add_argument("--no-progress", action="store_true", help="no progress bar")
    video.add_argument("--set", action="append", metavar="ID=VALUE", help="any other bundle config override")
    video.set_defaults(func=_video)
    node = commands.add_parser(
        "dicom-node",
        help="a DICOM node: receive images by C-STORE, segment them, send each DICOM SEG to the PACS",
        description="Listen for C-STORE (and C-ECHO) as a Storage SCP; store every received image instance in "
        "STORE_DIR (synced before the success status), segment it in the background with the bundle's inference "
        "and send its DICOM SEG (and with --also-sc/--also-sr its overlay and SR) to --forward by C-STORE, "
        "retrying with back-off. Restartable: after a crash or "
        "SIGKILL, start it again to finish the journaled work. Stop it with Ctrl-C or SIGTERM.",
    )
    node.add_argument("--aet", default="SEGDINO", help="this node's AE title (default SEGDINO)")
    node.add_argument("--port", type=int, default=11112, help="port to listen on (default 11112)")
    node.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    node.add_argument("--forward", required=True, metavar="AET@HOST:PORT", help="where SEGs go, e.g. the PACS")
    node.add_argument("--store-dir", default="segdino-node", help="received images, journal, results")
    node.add_argument("--allowed-aets", metavar="A,B", help="calling AE titles accepted (default: any)")
    node.add_argument("--send-attempts", type=int, default=5, help="refusals of one SEG before it is marked failed")
    node.add_argument("--max-backoff", type=float, default=60.0, help="longest delay between send retries (s)")
    _add_model_options(node)
    node.add_argument("--task", help="segment description: polyp, thyroid-nodule, breast-lesion, skin-lesion, lesion")
    _add_derived_object_options(node)
    node.add_argument("--set", action="append", metavar="ID=VALUE", help="any other bundle config override")
    node.set_defaults(func=_dicom_node)
    _add_label_commands(commands)
    return parser


def _add_derived_object_options(parser: argparse.ArgumentParser) -> None:
    """``--also-sc`` and ``--also-sr``: the DICOM objects written (and sent by the node) beside the SEG."""
    parser.add_argument(
        "--also-sc",
        action="store_true",
        help="also write a Secondary Capture overlay (sc.dcm; sc_NNNN.dcm per frame of a cine) for viewers that "
        "cannot show a SEG",
    )
    parser.add_argument(
        "--also-sr",
        action="store_true",
        help="also write a DICOM SR measurement report (sr.dcm, TID 1500): area (mm2) and maximum diameter (mm) of "
        "each segment, referencing the SEG and the source; none when the pixel size is unknown",
    )


def _add_label_commands(commands: argparse._SubParsersAction) -> None:
    env = commands.add_parser(
        "label-env",
        help="create (or reuse) the MONAI Label environment",
        description="Create the MONAI Label environment (monailabel 0.8.5, monai 1.5.2, numpy<2, pydicom<3, this "
        "package without the dicom extra), or reuse it when its marker and versions match.",
    )
    env.add_argument("--path", default=".venv-label", help="the environment folder (default .venv-label)")
    env.add_argument("--python", help="the interpreter to create it with (default: this one's base Python)")
    env.add_argument("--force", action="store_true", help="reinstall even when the environment is complete")
    env.set_defaults(func=_label_env)

    srv = commands.add_parser(
        "label-server",
        help="start the MONAI Label server on the bundle, offline",
        description="Serve the bundle as MONAI Label model `segdino` (infer and train) on a folder of 2D images "
        "(.jpg/.png; labels in <studies>/labels/final), or on the single-frame images of a DICOMweb server (final "
        "labels go back to it as DICOM SEG), offline. Stop it with Ctrl-C.",
    )
    srv.add_argument(
        "--studies",
        required=True,
        help="the image folder (MONAI Label's local datastore) or a DICOMweb URL (http://HOST:PORT/dicom-web)",
    )
    srv.add_argument(
        "--search-filter",
        metavar="JSON",
        help='with a DICOMweb URL: the QIDO-RS series filter (default {"Modality": "US,ES,XC,OT"}: ultrasound, '
        "endoscopy, dermoscopy photographs, secondary captures)",
    )
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    srv.add_argument("--bundle-root", help="the bundle to serve (default: ./bundle or .)")
    srv.add_argument("--backbone-weights", help="DINOv3 weights file (default: the bundle's models/ file)")
    srv.add_argument("--env", default=".venv-label", help="the MONAI Label environment (default .venv-label)")
    srv.add_argument(
        "--app-dir",
        default=".segdino-label-app",
        help="working app folder; the served bundle copy (with the trained model.pt) is <app-dir>/model/segdino",
    )
    srv.add_argument("--set", action="append", metavar="ID=VALUE", help="a config override for the served bundle")
    srv.set_defaults(func=_label_server)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``segdino`` command; returns the exit status (2 for bad input with the reason logged, 130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        logger.error("Interrupted.")
        finish_worker_threads()
        return 130
    except Exception as err:  # bad input is one line and exit 2; anything else is a bug and keeps its traceback
        if interrupted(err):  # Ctrl-C that a clean-up turned into another error (torch.save's zip writer)
            logger.error("Interrupted.")
            finish_worker_threads()
            return 130
        message = input_error_message(err)
        if message is None:
            raise
        logger.error("%s", message)
        finish_worker_threads()
        return 2
