"""Bad input at every entry point: one clear line naming the file or option, exit 2, no traceback, inputs unchanged.

Each case runs a command as a user types it on a corpus of bad inputs built here (random bytes, empty and truncated
files, pickles whose payload would create a marker file, malformed datalists, wrong options) and asserts:
- the exit status (2 for bad input that stops the command; 1 where the command reports and skips a bad file and
  finishes the rest),
- that the error names the file or option (every string in ``names``),
- that nothing printed a traceback,
- that every input file is byte-for-byte unchanged (hashes before and after),
- that no partial output was left (``clean`` folders hold no file afterwards),
- that no pickle payload ran (the marker file never appears).

The ``segdino`` cases call ``segdino_monai.cli.main`` in-process (the console script is exactly that call); the
``python -m monai.bundle run`` cases and a few ``segdino`` cases run as real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segdino_monai.cli import main
from segdino_monai.data.demo import make_demo_dataset
from segdino_monai.networks import SegDINO
from tests.conftest import TINY_VIT
from tests.networks.dinov3_files import tiny_timm_model, write_timm_file

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle"
CONFIGS = BUNDLE / "configs"
TINY_SET = ["--set", f"network_def#backbone_kwargs={TINY_VIT}", "--set", "num_workers=0"]
TINY = ["--backbone-weights", "random", "--spatial-size", "64", "64", *TINY_SET]
MARKER = "PAYLOAD_RAN"


class _Payload:
    """Pickles as a call that creates the marker file: loading it unsafely would run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Expect:
    """What a case runs and what it must give."""

    argv: list[str]
    code: int = 2
    names: list[str] = field(default_factory=list)
    clean: list[Path] = field(default_factory=list)
    bundle: bool = False  # ``python -m monai.bundle run`` (argv without it) instead of ``segdino``
    subprocess: bool = False


class Corpus:
    """The bad (and a few good) inputs every case draws from, built once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.out = root / "out"
        self.marker = self.inputs / MARKER
        w = self.weights = self.inputs / "weights"
        w.mkdir(parents=True)
        good = torch.nn.Linear(4, 4).state_dict()
        torch.save(good, w / "good_linear.pt")
        (w / "empty.pth").write_bytes(b"")
        (w / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
        torch.save({"a": torch.zeros(64, 64)}, w / "full.pth")
        (w / "truncated.pth").write_bytes((w / "full.pth").read_bytes()[:3000])
        torch.save({"model": {"cls_token": torch.ones(1)}, "args": _Payload(self.marker)}, w / "payload.pth")
        import pickle

        (w / "raw_pickle.pth").write_bytes(pickle.dumps(_Payload(self.marker)))
        (w / "text.safetensors").write_text("not safetensors\n")
        (w / "folder.pth").mkdir()
        write_timm_file(tiny_timm_model(**TINY_VIT), w / "tiny_timm.safetensors")

        d = self.data = self.inputs / "demo"
        make_demo_dataset(d, "endoscopy", num_images=8, size=(64, 64), seed=0)
        datalist = json.loads((d / "datalist.json").read_text())
        self.datalists = self.inputs / "datalists"
        self.datalists.mkdir()
        self._datalist("malformed.json", '{"training": [{"image": ')
        self._datalist("no_training.json", {"validation": datalist["validation"]})
        self._datalist("no_label.json", {**datalist, "training": [{"image": e["image"]} for e in datalist["training"]]})
        missing = [{"image": str(d / "images" / "gone.png"), "label": str(d / "masks" / "gone.png")}]
        self._datalist("missing_file.json", {**datalist, "training": datalist["training"] + missing})
        self._datalist("empty_training.json", {**datalist, "training": []})
        self._datalist("empty_validation.json", {**datalist, "validation": []})
        self._datalist("not_a_list.json", {**datalist, "training": "images/"})
        cut = d / "broken" / "cut_image.png"
        cut.parent.mkdir()
        cut.write_bytes((d / datalist["training"][0]["image"]).read_bytes()[:300])
        unreadable = [{"image": "broken/cut_image.png", "label": datalist["training"][0]["label"]}]
        self._datalist("unreadable_image.json", {**datalist, "training": unreadable + datalist["training"][1:]})
        self._relative(datalist)

        m = self.models = self.inputs / "models"
        torch.manual_seed(0)
        for name, net in (
            ("good", SegDINO(backbone_kwargs=TINY_VIT)),
            ("three_classes", SegDINO(out_channels=3, backbone_kwargs=TINY_VIT)),
            ("wider_backbone", SegDINO(backbone_kwargs={**TINY_VIT, "embed_dim": 64})),
        ):
            net.save_decoder(m / name / "model.pt")
        for name in ("empty", "random", "truncated", "payload"):
            (m / name).mkdir()
        (m / "empty" / "model.pt").write_bytes(b"")
        (m / "random" / "model.pt").write_bytes(np.random.default_rng(1).bytes(4096))
        (m / "truncated" / "model.pt").write_bytes((m / "good" / "model.pt").read_bytes()[:5000])
        shutil.copy(w / "payload.pth", m / "payload" / "model.pt")
        (m / "no_model").mkdir()

        i = self.images = self.inputs / "images"
        good_images = sorted((d / "images").glob("*.png"))[:3]
        for folder in ("good", "mixed", "junk_only", "empty"):
            (i / folder).mkdir(parents=True)
        for path in good_images:
            shutil.copy(path, i / "good" / path.name)
            shutil.copy(path, i / "mixed" / path.name)
        jpeg = i / "mixed" / "photo.jpg"
        Image.open(good_images[0]).convert("RGB").save(jpeg, quality=95)
        (i / "mixed" / "truncated.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
        (i / "mixed" / "notes.png").write_text("this is text, not a PNG\n")
        (i / "mixed" / "empty.png").write_bytes(b"")
        for folder in ("mixed", "junk_only"):
            (i / folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
            (i / folder / "._photo.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
        (i / "junk_only" / "readme.txt").write_text("no images here\n")
        (i / "not_an_image.png").write_text("text\n")
        self.a_file = i / "not_an_image.png"

        self.dataset = self.inputs / "dataset"
        (self.dataset / "images").mkdir(parents=True)
        (self.dataset / "masks").mkdir()
        for path in good_images:
            shutil.copy(path, self.dataset / "images" / path.name)
            shutil.copy(d / "masks" / path.name, self.dataset / "masks" / path.name)
        (self.dataset / "images" / "unpaired.png").write_bytes((d / "images" / good_images[0].name).read_bytes())
        self.truncated_dataset = self.inputs / "truncated_dataset"
        shutil.copytree(self.dataset, self.truncated_dataset)
        (self.truncated_dataset / "images" / "unpaired.png").unlink()
        first = self.truncated_dataset / "images" / good_images[0].name
        first.write_bytes(first.read_bytes()[:200])
        self.mismatch_dataset = self.inputs / "mismatch_dataset"
        shutil.copytree(self.dataset, self.mismatch_dataset)
        (self.mismatch_dataset / "images" / "unpaired.png").unlink()
        Image.new("L", (32, 48)).save(self.mismatch_dataset / "masks" / good_images[1].name)

        self.not_a_run = self.inputs / "not_a_run"
        self.not_a_run.mkdir()
        self.bad_csv_run = self.inputs / "bad_csv_run"
        self.bad_csv_run.mkdir()
        (self.bad_csv_run / "metrics_per_image.csv").write_text("image,dice\nx.png,not-a-number,extra\n\x00\x01")
        (self.bad_csv_run / "metrics_summary.json").write_text("{not json")
        self.empty_bundle = self.inputs / "empty_bundle"
        self.empty_bundle.mkdir()

    def _datalist(self, name: str, content: object) -> Path:
        path = self.datalists / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def _relative(self, datalist: dict) -> None:
        """Datalists here point at the demo files by absolute path (they live in another folder)."""
        names = ("no_label.json", "missing_file.json", "empty_training.json", "empty_validation.json")
        for name in (*names, "unreadable_image.json"):
            path = self.datalists / name
            content = json.loads(path.read_text())
            for split in content.values():
                for entry in split if isinstance(split, list) else []:
                    for key, value in entry.items():
                        entry[key] = str((self.data / value).resolve()) if not Path(value).is_absolute() else value
            path.write_text(json.dumps(content))

    def output(self, case: str) -> Path:
        return self.out / case


def _train(c: Corpus, case: str, *extra: str) -> list[str]:
    out = c.output(case)
    return ["train", "--datalist", str(c.data / "datalist.json"), *TINY, "--epochs", "1",
            "--output-dir", str(out / "eval"), "--ckpt-dir", str(out / "models"), *extra]  # fmt: skip


def _evaluate(c: Corpus, case: str, models: str = "good", *extra: str) -> list[str]:
    out = c.output(case)
    return ["evaluate", "--datalist", str(c.data / "datalist.json"), *TINY, "--output-dir", str(out / "eval"),
            "--ckpt-dir", str(c.models / models), *extra]  # fmt: skip


def _infer(c: Corpus, case: str, images: Path, models: str = "good", *extra: str) -> list[str]:
    out = c.output(case)
    return ["infer", "--dataset-dir", str(images), *TINY, "--output-dir", str(out), "--ckpt-dir",
            str(c.models / models), *extra]  # fmt: skip


def _dicom(c: Corpus, case: str, *inputs: str, checkpoint: Path | None = None, extra: tuple = ()) -> list[str]:
    ckpt = checkpoint or c.models / "good" / "model.pt"
    return ["dicom", *inputs, "-o", str(c.output(case)), "--backbone-weights", "random", "--checkpoint", str(ckpt),
            "--set", f"network_def#backbone_kwargs={TINY_VIT}", "--set", "spatial_size=[64, 64]", "--no-progress",
            *extra]  # fmt: skip


def _bundle(c: Corpus, case: str, command: str, *extra: str) -> list[str]:
    files = {"training": ["train.json"], "evaluating": ["train.json", "evaluate.json"], "inference": ["inference.json"]}
    config = str([str(CONFIGS / f) for f in files[command]])
    out = c.output(case)
    return ["run", command, "--config_file", config, "--meta_file", str(CONFIGS / "metadata.json"),
            "--logging_file", str(CONFIGS / "logging.conf"), "--bundle_root", str(BUNDLE),
            "--output_dir", str(out / "eval"), "--ckpt_dir", str(out / "models"), "--backbone_weights", "random",
            "--network_def#backbone_kwargs", str(TINY_VIT), "--spatial_size", "[64,64]", "--num_workers", "0",
            *(["--train#trainer#max_epochs", "1"] if command == "training" else []), *extra]  # fmt: skip


def _dicom_file(name: str) -> str:
    return str(REPO.parent / "shared" / "fixtures" / "dicom" / "us" / "pydicom__pydicom" / name)


CASES: dict[str, Callable[[Corpus], Expect]] = {
    # check-weights: every way a weights file can be wrong
    "check_weights_missing": lambda c: Expect(
        ["check-weights", str(c.weights / "nowhere.pth")], names=["nowhere.pth", "not found"]
    ),
    "check_weights_empty": lambda c: Expect(
        ["check-weights", str(c.weights / "empty.pth")], names=["empty.pth", "empty (0 bytes)"]
    ),
    "check_weights_random_bytes": lambda c: Expect(
        ["check-weights", str(c.weights / "random.pth")], names=["random.pth", "cannot be read"]
    ),
    "check_weights_truncated": lambda c: Expect(
        ["check-weights", str(c.weights / "truncated.pth")], names=["truncated.pth", "truncated"]
    ),
    "check_weights_pickle_payload": lambda c: Expect(
        ["check-weights", str(c.weights / "payload.pth")], names=["payload.pth", "pickled Python objects"]
    ),
    "check_weights_raw_pickle": lambda c: Expect(
        ["check-weights", str(c.weights / "raw_pickle.pth")], names=["raw_pickle.pth"]
    ),
    "check_weights_text_safetensors": lambda c: Expect(
        ["check-weights", str(c.weights / "text.safetensors")], names=["text.safetensors"]
    ),
    "check_weights_folder": lambda c: Expect(
        ["check-weights", str(c.weights / "folder.pth")], names=["folder.pth", "folder"]
    ),
    "check_weights_not_a_vit": lambda c: Expect(
        ["check-weights", str(c.weights / "good_linear.pt")], names=["good_linear.pt"]
    ),
    "check_weights_wrong_size": lambda c: Expect(
        ["check-weights", str(c.weights / "tiny_timm.safetensors")],
        names=["tiny_timm.safetensors", "embed_dim 48", "embed_dim 384"],
    ),
    "check_weights_unknown_backbone": lambda c: Expect(
        ["check-weights", str(c.weights / "tiny_timm.safetensors"), "--backbone", "vitz16"], names=["vitz16"]
    ),
    # prepare-data
    "prepare_missing_folder": lambda c: Expect(
        ["prepare-data", str(c.inputs / "nowhere"), "-o", str(c.output("p1") / "d.json")],
        names=["nowhere"],
        clean=[c.output("p1")],
    ),
    "prepare_empty_folder": lambda c: Expect(
        ["prepare-data", str(c.images / "empty"), "-o", str(c.output("p2") / "d.json")],
        names=["empty"],
        clean=[c.output("p2")],
    ),
    "prepare_output_is_a_folder": lambda c: Expect(
        ["prepare-data", str(c.data), "-o", str(c.images / "good")], names=[str(c.images / "good")]
    ),
    "prepare_output_under_a_file": lambda c: Expect(
        ["prepare-data", str(c.data), "-o", str(c.a_file / "d.json")], names=["not_an_image.png"]
    ),
    "prepare_unpaired_image": lambda c: Expect(
        ["prepare-data", str(c.dataset), "--layout", "generic", "-o", str(c.output("p5") / "d.json")],
        names=["unpaired.png"],
        clean=[c.output("p5")],
    ),
    "prepare_truncated_image": lambda c: Expect(
        ["prepare-data", str(c.truncated_dataset), "--layout", "generic", "-o", str(c.output("p6") / "d.json")],
        names=["demo_"],
        clean=[c.output("p6")],
    ),
    "prepare_size_mismatch": lambda c: Expect(
        ["prepare-data", str(c.mismatch_dataset), "--layout", "generic", "-o", str(c.output("p7") / "d.json")],
        names=["demo_"],
        clean=[c.output("p7")],
    ),
    "prepare_unknown_layout": lambda c: Expect(
        ["prepare-data", str(c.dataset), "--layout", "kvasirr", "-o", str(c.output("p8") / "d.json")],
        names=["kvasirr"],
        clean=[c.output("p8")],
    ),
    "prepare_bad_fraction": lambda c: Expect(
        ["prepare-data", str(c.data), "--val-fraction", "1.5", "-o", str(c.output("p9") / "d.json")],
        names=["1.5"],
        clean=[c.output("p9")],
    ),
    # train
    "train_datalist_missing": lambda c: Expect(
        _train(c, "t1") + ["--datalist", str(c.datalists / "nowhere.json")],
        names=["nowhere.json"],
        clean=[c.output("t1")],
    ),
    "train_datalist_malformed": lambda c: Expect(
        _train(c, "t2") + ["--datalist", str(c.datalists / "malformed.json")],
        names=["malformed.json"],
        clean=[c.output("t2")],
    ),
    "train_datalist_no_training_key": lambda c: Expect(
        _train(c, "t3") + ["--datalist", str(c.datalists / "no_training.json")],
        names=["no_training.json", "training"],
        clean=[c.output("t3")],
    ),
    "train_datalist_entry_without_label": lambda c: Expect(
        _train(c, "t4") + ["--datalist", str(c.datalists / "no_label.json")],
        names=["no_label.json", "label"],
        clean=[c.output("t4")],
    ),
    "train_datalist_missing_file": lambda c: Expect(
        _train(c, "t5") + ["--datalist", str(c.datalists / "missing_file.json")],
        names=["gone.png"],
        clean=[c.output("t5")],
    ),
    "train_datalist_empty_training": lambda c: Expect(
        _train(c, "t6") + ["--datalist", str(c.datalists / "empty_training.json")],
        names=["empty_training.json", "training"],
        clean=[c.output("t6")],
    ),
    "train_datalist_empty_validation": lambda c: Expect(
        _train(c, "t7") + ["--datalist", str(c.datalists / "empty_validation.json")],
        names=["empty_validation.json", "validation"],
        clean=[c.output("t7")],
    ),
    "train_datalist_split_not_a_list": lambda c: Expect(
        _train(c, "t8") + ["--datalist", str(c.datalists / "not_a_list.json")],
        names=["not_a_list.json", "training"],
        clean=[c.output("t8")],
    ),
    "train_weights_random_bytes": lambda c: Expect(
        _train(c, "t9") + ["--backbone-weights", str(c.weights / "random.pth")],
        names=["random.pth"],
        clean=[c.output("t9")],
    ),
    "train_weights_pickle_payload": lambda c: Expect(
        _train(c, "t10") + ["--backbone-weights", str(c.weights / "payload.pth")],
        names=["payload.pth", "pickled"],
        clean=[c.output("t10")],
    ),
    "train_weights_empty": lambda c: Expect(
        _train(c, "t11") + ["--backbone-weights", str(c.weights / "empty.pth")],
        names=["empty.pth"],
        clean=[c.output("t11")],
    ),
    "train_weights_missing": lambda c: Expect(
        _train(c, "t12") + ["--backbone-weights", str(c.weights / "nowhere.pth")],
        names=["nowhere.pth"],
        clean=[c.output("t12")],
    ),
    "train_spatial_size_not_multiple_of_16": lambda c: Expect(
        _train(c, "t13") + ["--spatial-size", "250", "250"], names=["spatial_size", "16"], clean=[c.output("t13")]
    ),
    "train_spatial_size_zero": lambda c: Expect(
        _train(c, "t14") + ["--spatial-size", "0", "256"], names=["spatial_size"], clean=[c.output("t14")]
    ),
    "train_typo_config_id": lambda c: Expect(
        _train(c, "t15") + ["--set", "feature_cahce=true"],
        names=["feature_cahce", "feature_cache"],
        clean=[c.output("t15")],
    ),
    "train_bad_boolean": lambda c: Expect(
        _train(c, "t16") + ["--set", "feature_cache=maybe"], names=["feature_cache", "maybe"], clean=[c.output("t16")]
    ),
    "train_resume_without_checkpoint": lambda c: Expect(
        _train(c, "t17", "--resume"), names=["resume"], clean=[c.output("t17") / "models"]
    ),
    "train_bundle_root_without_configs": lambda c: Expect(
        _train(c, "t18") + ["--bundle-root", str(c.empty_bundle)], names=[str(c.empty_bundle)], clean=[c.output("t18")]
    ),
    "train_output_dir_under_a_file": lambda c: Expect(
        _train(c, "t19") + ["--output-dir", str(c.a_file / "eval")], names=["not_an_image.png"]
    ),
    "train_dataset_dir_missing": lambda c: Expect(
        ["train", "--dataset-dir", str(c.inputs / "nowhere"), *TINY, "--output-dir", str(c.output("t20"))],
        names=["nowhere"],
        clean=[c.output("t20")],
    ),
    "train_datalist_unreadable_image": lambda c: Expect(
        _train(c, "t21") + ["--datalist", str(c.datalists / "unreadable_image.json")],
        names=["cut_image.png", "cannot be read"],
        clean=[c.output("t21") / "models"],
    ),
    # evaluate
    "evaluate_no_model": lambda c: Expect(_evaluate(c, "e1", "no_model"), names=["model.pt"], clean=[c.output("e1")]),
    "evaluate_model_empty": lambda c: Expect(
        _evaluate(c, "e2", "empty"), names=["model.pt", "empty"], clean=[c.output("e2")]
    ),
    "evaluate_model_random_bytes": lambda c: Expect(
        _evaluate(c, "e3", "random"), names=["model.pt", "cannot be read"], clean=[c.output("e3")]
    ),
    "evaluate_model_truncated": lambda c: Expect(
        _evaluate(c, "e4", "truncated"), names=["model.pt", "truncated"], clean=[c.output("e4")]
    ),
    "evaluate_model_pickle_payload": lambda c: Expect(
        _evaluate(c, "e5", "payload"), names=["model.pt", "pickled"], clean=[c.output("e5")]
    ),
    "evaluate_model_other_class_count": lambda c: Expect(
        _evaluate(c, "e6", "three_classes"), names=["model.pt", "--num_classes 3"], clean=[c.output("e6")]
    ),
    "evaluate_model_other_backbone": lambda c: Expect(
        _evaluate(c, "e7", "wider_backbone"), names=["model.pt", "embed_dim 64"], clean=[c.output("e7")]
    ),
    "evaluate_empty_split": lambda c: Expect(
        _evaluate(c, "e8", "good", "--split", "validation")
        + ["--datalist", str(c.datalists / "empty_validation.json")],
        names=["empty_validation.json", "validation"],
        clean=[c.output("e8")],
    ),
    "evaluate_datalist_malformed": lambda c: Expect(
        _evaluate(c, "e9") + ["--datalist", str(c.datalists / "malformed.json")],
        names=["malformed.json"],
        clean=[c.output("e9")],
    ),
    # infer
    "infer_folder_missing": lambda c: Expect(
        _infer(c, "i1", c.inputs / "nowhere"), names=["nowhere"], clean=[c.output("i1")]
    ),
    "infer_folder_empty": lambda c: Expect(
        _infer(c, "i2", c.images / "empty"), names=[str(c.images / "empty")], clean=[c.output("i2")]
    ),
    "infer_folder_junk_only": lambda c: Expect(
        _infer(c, "i3", c.images / "junk_only"), names=[str(c.images / "junk_only")], clean=[c.output("i3")]
    ),
    "infer_model_random_bytes": lambda c: Expect(
        _infer(c, "i4", c.images / "good", "random"), names=["model.pt"], clean=[c.output("i4")]
    ),
    "infer_model_pickle_payload": lambda c: Expect(
        _infer(c, "i5", c.images / "good", "payload"), names=["model.pt", "pickled"], clean=[c.output("i5")]
    ),
    "infer_output_under_a_file": lambda c: Expect(
        _infer(c, "i6", c.images / "good") + ["--output-dir", str(c.a_file / "out")], names=["not_an_image.png"]
    ),
    "infer_weights_truncated": lambda c: Expect(
        _infer(c, "i7", c.images / "good") + ["--backbone-weights", str(c.weights / "truncated.pth")],
        names=["truncated.pth"],
        clean=[c.output("i7")],
    ),
    "infer_bad_files_among_good_are_skipped": lambda c: Expect(
        _infer(c, "i8", c.images / "mixed"), code=1, names=["truncated.jpg", "notes.png", "empty.png"]
    ),
    # dicom
    "dicom_input_missing": lambda c: Expect(
        _dicom(c, "d1", str(c.inputs / "nowhere.dcm")), names=["nowhere.dcm"], clean=[c.output("d1")]
    ),
    "dicom_folder_empty": lambda c: Expect(
        _dicom(c, "d2", str(c.images / "empty")), names=[str(c.images / "empty")], clean=[c.output("d2")]
    ),
    "dicom_not_dicom": lambda c: Expect(_dicom(c, "d3", str(c.a_file)), code=1, names=["not_an_image.png"]),
    "dicom_output_is_input_folder": lambda c: Expect(
        ["dicom", str(c.images / "good"), "-o", str(c.images / "good"), "--backbone-weights", "random"],
        names=[str(c.images / "good")],
    ),
    "dicom_checkpoint_random_bytes": lambda c: Expect(
        _dicom(c, "d5", _dicom_file("examples_rgb_color.dcm"), checkpoint=c.models / "random" / "model.pt"),
        names=["model.pt"],
        clean=[c.output("d5")],
    ),
    "dicom_checkpoint_pickle_payload": lambda c: Expect(
        _dicom(c, "d6", _dicom_file("examples_rgb_color.dcm"), checkpoint=c.models / "payload" / "model.pt"),
        names=["model.pt", "pickled"],
        clean=[c.output("d6")],
    ),
    "dicom_frames_out_of_range": lambda c: Expect(
        _dicom(c, "d7", _dicom_file("examples_ybr_color.dcm"), extra=("--frames", "999")), code=1, names=["999"]
    ),
    # report
    "report_missing_folder": lambda c: Expect(["report", str(c.inputs / "nowhere")], names=["nowhere"]),
    "report_not_an_evaluation": lambda c: Expect(["report", str(c.not_a_run)], names=["not_a_run"]),
    "report_malformed_metrics": lambda c: Expect(["report", str(c.bad_csv_run)], names=["bad_csv_run"]),
    # the same through real processes: the console script, and python -m monai.bundle run
    "process_segdino_pickle_weights": lambda c: Expect(
        ["check-weights", str(c.weights / "payload.pth")], names=["payload.pth"], subprocess=True
    ),
    "process_segdino_bad_boolean": lambda c: Expect(
        _train(c, "s2") + ["--set", "resume=perhaps"],
        names=["resume", "perhaps"],
        subprocess=True,
        clean=[c.output("s2")],
    ),
    "process_segdino_unreadable_image_with_loader_threads": lambda c: Expect(
        _train(c, "s3")  # the later --set num_workers=2 wins: CacheDataset fills its cache in threads
        + ["--datalist", str(c.datalists / "unreadable_image.json"), "--set", "num_workers=2"],
        names=["cut_image.png"],
        subprocess=True,
        clean=[c.output("s3") / "models"],
    ),
    "bundle_training_bad_boolean": lambda c: Expect(
        _bundle(c, "b1", "training", "--resume", "maybe"),
        names=["resume", "maybe"],
        bundle=True,
        clean=[c.output("b1") / "models"],
    ),
    "bundle_training_typo_config_id": lambda c: Expect(
        _bundle(c, "b2", "training", "--feature_cahce", "true"),
        names=["feature_cahce"],
        bundle=True,
        clean=[c.output("b2") / "models"],
    ),
    "bundle_training_pickle_weights": lambda c: Expect(
        _bundle(c, "b3", "training", "--backbone_weights", str(c.weights / "payload.pth")),
        names=["payload.pth"],
        bundle=True,
        clean=[c.output("b3") / "models"],
    ),
    "bundle_training_malformed_datalist": lambda c: Expect(
        _bundle(c, "b4", "training", "--datalist", str(c.datalists / "malformed.json")),
        names=["malformed.json"],
        bundle=True,
        clean=[c.output("b4") / "models"],
    ),
    "bundle_evaluating_bad_model": lambda c: Expect(
        _bundle(c, "b5", "evaluating", "--ckpt_dir", str(c.models / "truncated")), names=["model.pt"], bundle=True
    ),
    "bundle_inference_empty_folder": lambda c: Expect(
        _bundle(c, "b6", "inference", "--dataset_dir", str(c.images / "empty"), "--ckpt_dir", str(c.models / "good")),
        names=[str(c.images / "empty")],
        bundle=True,
    ),
    "bundle_inference_spatial_size": lambda c: Expect(
        _bundle(
            c,
            "b7",
            "inference",
            "--dataset_dir",
            str(c.images / "good"),
            "--ckpt_dir",
            str(c.models / "good"),
            "--spatial_size",
            "[250,250]",
        ),
        names=["spatial_size"],
        bundle=True,
    ),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("bad_inputs"))


def _hashes(*roots: Path) -> dict[str, str]:
    found = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _run_process(argv: list[str], bundle: bool) -> tuple[int, str]:
    command = [sys.executable, "-m", "monai.bundle" if bundle else "segdino_monai.cli", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, corpus, fixtures_dir, capfd, caplog):
    expect = CASES[case](corpus)
    dicom_inputs = [Path(a) for a in expect.argv if a.endswith(".dcm") and Path(a).is_file()]
    before = _hashes(corpus.inputs, *dicom_inputs)
    if expect.bundle or expect.subprocess:
        code, text = _run_process(expect.argv, expect.bundle)
        errors = text
    else:
        with caplog.at_level(logging.INFO):
            code = main(expect.argv)
        out, err = capfd.readouterr()
        text = caplog.text + out + err
        # a bundle workflow's logging.conf replaces the root handlers (and so caplog's): read its lines too
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        errors = " ".join(logged + [line for line in (out + err).splitlines() if "ERROR" in line or "WARN" in line])
    assert code == expect.code, f"exit status {code}, expected {expect.code}:\n{text[-3000:]}"
    for name in expect.names:
        assert name in errors, f"{name!r} not named in the errors:\n{errors[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert "weights_only=False" not in text and "`weights_only` set to `False`" not in text
    assert _hashes(corpus.inputs, *dicom_inputs) == before, "an input file was changed, added or removed"
    for folder in expect.clean:
        left = [str(p) for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
        assert left == [], f"partial output left behind: {left}"
    assert not corpus.marker.exists(), "a pickle payload ran"


def test_the_corpus_covers_every_entry_point_with_at_least_60_cases():
    assert len(CASES) >= 60
    prefixes = {name.split("_")[0] for name in CASES}
    assert {"check", "prepare", "train", "evaluate", "infer", "dicom", "report", "bundle", "process"} <= prefixes
    commands = {argv for name in CASES if name.startswith("bundle") for argv in ("training", "evaluating", "inference")
                if f"_{argv}_" in name}  # fmt: skip
    assert commands == {"training", "evaluating", "inference"}
