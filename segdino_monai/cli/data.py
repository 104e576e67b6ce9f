"""``segdino check-weights``, ``prepare-data`` and ``make-demo-data``: the inputs of a run, checked or made."""

from __future__ import annotations

import argparse
import logging

from segdino_monai.cli.options import MODALITIES, add_model_options

__all__ = ["add_parser", "run"]

logger = logging.getLogger("segdino_monai")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the check-weights, prepare-data and make-demo-data sub-commands."""
    check = commands.add_parser(
        "check-weights", help="check that DINOv3 weights load exactly, and print the file's SHA-256"
    )
    check.add_argument(
        "weights",
        help="Meta's .pth or timm's .pth/.safetensors DINOv3 weights file, or a Hugging Face snapshot folder "
        "(config.json and model.safetensors) or its model.safetensors",
    )
    add_model_options(check, ["--backbone"])
    check.set_defaults(func=run, backbone="vits16")

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
    prepare.set_defaults(func=run)

    demo = commands.add_parser("make-demo-data", help="write a small synthetic dataset with its datalist JSON")
    demo.add_argument("out_dir", help="the folder to write into")
    demo.add_argument("--modality", default="endoscopy", choices=list(MODALITIES))
    demo.add_argument("-n", "--num-images", type=int, default=12, help="number of image/mask pairs (default 12)")
    demo.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="image size")
    demo.add_argument("--seed", type=int, default=0, help="seed (same seed, same files)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``args.command``: check-weights, prepare-data or make-demo-data."""
    return {"check-weights": _check_weights, "prepare-data": _prepare_data, "make-demo-data": _make_demo_data}[
        args.command
    ](args)


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
