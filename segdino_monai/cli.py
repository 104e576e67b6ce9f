"""The ``segdino`` command: one entry point, one sub-command per task."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

logger = logging.getLogger("segdino_monai")


def _check_weights(args: argparse.Namespace) -> int:
    from segdino_monai.networks import DINOv3Backbone

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="segdino", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-weights", help="check that a DINOv3 weights file loads exactly")
    check.add_argument("weights", help="Meta's .pth or timm's .pth/.safetensors DINOv3 weights file")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``segdino`` command; returns the exit status (2 for bad input, with the reason logged)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as err:
        logger.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
