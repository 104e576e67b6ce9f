"""``segdino train``, ``evaluate`` and ``infer``: the bundle's workflows from plain options."""

from __future__ import annotations

import argparse

from segdino_monai.cli.options import BUNDLE_MODEL, add_model_options, add_set_option, set_overrides

__all__ = ["add_parser", "run"]

COMMANDS = {
    "train": "train the decoder",
    "evaluate": "evaluate model.pt (Dice, IoU, HD95 at original resolution; at model size with --preset paper)",
    "infer": "segment a folder of images",
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the train, evaluate and infer sub-commands."""
    for name, help_text in COMMANDS.items():
        _add_command(commands, name, help_text)


def _add_command(commands: argparse._SubParsersAction, name: str, help_text: str) -> None:
    parser = commands.add_parser(name, help=help_text, description=f"{help_text}. Runs the bundle's {name} workflow.")
    add_model_options(parser, BUNDLE_MODEL)
    parser.add_argument("--dataset-dir", help="dataset folder (train/evaluate) or image folder (infer); default: demo")
    parser.add_argument("--num-classes", type=int, help="1 for binary, N for N classes with background")
    parser.add_argument("--spatial-size", type=int, nargs=2, metavar=("H", "W"), help="model input size")
    parser.add_argument("--output-dir", help="where logs, metrics and predictions go")
    parser.add_argument("--ckpt-dir", help="where model.pt and the training checkpoints are")
    add_set_option(parser)
    parser.set_defaults(func=run)
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
    if name == "train":
        parser.add_argument("--epochs", type=int, help="number of epochs")
        parser.add_argument("--learning-rate", type=float, help="AdamW learning rate")
        parser.add_argument("--batch-size", type=int, help="batch size")
        parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --ckpt-dir")
    if name == "evaluate":
        parser.add_argument("--split", choices=["test", "validation", "training"], help="datalist split (default test)")
        parser.add_argument("--save-predictions", action="store_true", help="also write masks and overlays")
    if name == "infer":
        parser.add_argument("--mode", choices=["resize", "native"], help="resize to the model size, or sliding window")
        parser.add_argument("--nifti", action="store_true", help="also write NIfTI masks")
        parser.add_argument("--largest-component", action="store_true", help="keep the largest connected component")
        parser.add_argument("--fill-holes", action="store_true", help="fill holes in the masks")


def run(args: argparse.Namespace) -> int:
    """Run the bundle workflow; its overrides, ``--set`` included, are checked against the configs first."""
    from segdino_monai.utils.errors import InputError
    from segdino_monai.workflows import runner

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
    overrides.update(set_overrides(args.set))
    preset, tracking = getattr(args, "preset", "default"), getattr(args, "tracking", None)
    # bundle_workflow checks every override id (--set's too) against the task's merged configs before anything runs
    return runner.run_bundle(args.command, args.bundle_root, overrides, preset=preset, tracking=tracking)
