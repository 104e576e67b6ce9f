"""``segdino export``: the inference network to ONNX or TorchScript, validated against PyTorch."""

from __future__ import annotations

import argparse
import logging

from segdino_monai.cli.options import add_model_options, add_set_option, serving_overrides

__all__ = ["add_parser", "run"]

logger = logging.getLogger("segdino_monai")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the export sub-command."""
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
    add_model_options(export)
    export.add_argument(
        "--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="example size (default 256)"
    )
    export.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest accepted absolute logit difference (default 1e-4)"
    )
    add_set_option(export)
    export.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and validate the network; exit 1 when the exported file disagrees with PyTorch."""
    from segdino_monai.tools.export import ExportMismatch, check_export, export_network, load_bundle_network

    overrides = serving_overrides(args)
    path = check_export(args.output, args.format)  # a bad output stops the command before the model loads
    if args.modality:
        overrides["modality"] = args.modality
    network, info = load_bundle_network(args.bundle_root, args.backbone_weights, args.checkpoint, overrides)
    try:
        export_network(network, path, args.format, args.image_size, args.tolerance, info)
    except ExportMismatch as err:
        logger.error("%s", err)
        return 1
    return 0
