"""One predictor: the bundle's ``inference.json`` network, preprocessing, inferer and postprocessing, loaded once.

Every service runs the bundle's own pipeline through :class:`BundlePredictor`: ``segdino dicom`` and the DICOM node
(one frame of a file at a time), ``segdino video`` (batches of decoded frames or cine frames) and ``segdino export``
(the network alone, :meth:`BundlePredictor.network_for_export`). The configs are ``inference.json``, the modality's
``configs/<modality>.json`` and the overrides, as for ``monai.bundle run inference``. Images are read by the config's
own loader (its ``image_reader``, the package's reader, which reads DICOM and 2D ITK files; the frame of a multi-frame
file is set on it per call), the config's ``preprocessing``, ``inferer`` and ``postprocessing`` follow, the last
without its file writer (``SaveSegmentationd``): the services write DICOM SEG and their own files instead, as MONAI
Label leaves a bundle's writers out (``post_filter``). Predictions are inverted to the source grid by the config's
``Invertd``, then thresholded by its ``AsDiscreted``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscreted, Compose

from segdino_monai.utils.errors import InputError

__all__ = ["BundlePredictor", "Prediction"]

#: ``(mask (H, W) uint8 class indices, probabilities (C, H, W) float32 or None)`` of one image, at its source size.
Prediction = tuple[np.ndarray, "np.ndarray | None"]

_TRAIN_FIRST = "Train first, or pass --checkpoint <model.pt> (or --bundle-root of a trained bundle)."


class BundlePredictor:
    """The bundle's inference pipeline, loaded once, run on loaded images one at a time or in batches.

    Args:
        bundle_root: the bundle folder (default: found from the working directory).
        backbone_weights: DINOv3 weights file (default: the bundle's); ``"random"`` for tests.
        checkpoint: decoder checkpoint (default: the bundle's ``models/model.pt``; none with the bundle's
            ``onnx_model`` override, whose ONNX file is the whole network).
        modality: the modality whose config file is merged (default: the bundle's default, endoscopy).
        overrides: further bundle config overrides (``{"network_def#backbone_kwargs": {...}}``, ...).

    Attributes:
        network, inferer, reader (the config's ``image_reader``), preprocessing (its first ``load_steps`` steps
        read the file), to_probabilities and to_mask (the postprocessing without ``SaveSegmentationd``, split before
        its ``AsDiscreted``), modality, num_classes, device, checkpoint, model_name and model_id (the SHA-256 of
        the decoder checkpoint or ONNX file).

    Raises:
        InputError: both a checkpoint and ``onnx_model`` given, or no trained decoder.
    """

    def __init__(
        self,
        bundle_root: str | Path | None = None,
        backbone_weights: str | None = None,
        checkpoint: str | Path | None = None,
        modality: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        from segdino_monai.transforms import SaveSegmentationd
        from segdino_monai.workflows import bundle_workflow, require_file

        # a non-empty dataset_dir makes a missing weights file an error rather than the demo's random backbone
        settings = {"backbone_weights": backbone_weights, "modality": modality, "dataset_dir": "dicom-input"}
        workflow = bundle_workflow("infer", bundle_root, **{**settings, **dict(overrides or {})})
        workflow.initialize()
        parser = workflow.parser
        self.modality: str = parser.get_parsed_content("modality")
        self.num_classes = int(parser.get_parsed_content("num_classes"))
        self.device = parser.get_parsed_content("device")
        self.network = parser.get_parsed_content("network")
        onnx_model = str(parser.get_parsed_content("onnx_model") or "")
        if onnx_model and checkpoint:
            raise InputError(
                f"--checkpoint {checkpoint} and --set onnx_model={onnx_model} were both given: the ONNX file holds the "
                "whole network, decoder included. Give one of them."
            )
        if onnx_model:  # ONNX Runtime runs the exported network (the bundle's onnx_model option); no model.pt
            path: str | Path = onnx_model
        else:
            path = checkpoint or require_file(
                f"{parser.get_parsed_content('ckpt_dir')}/model.pt", "Trained decoder", _TRAIN_FIRST
            )
            self.network.load_decoder(str(path))
        self.checkpoint = str(path)
        self.network.eval()
        self.inferer = parser.get_parsed_content("inferer")
        self.reader = parser.get_parsed_content("image_reader")
        self.preprocessing: Compose = parser.get_parsed_content("preprocessing")
        # the config's preprocessing starts with its `load` steps: their output is the source frame the writers draw on
        self.load_steps = len(parser.get_parsed_content("load"))
        postprocessing = parser.get_parsed_content("postprocessing").transforms
        steps = [t for t in postprocessing if not isinstance(t, SaveSegmentationd)]
        # the probabilities (after the activation, inversion and smoothing) are the input of the threshold/argmax
        split = next((i for i, t in enumerate(steps) if isinstance(t, AsDiscreted)), None)
        if split is None:
            raise RuntimeError("the bundle's postprocessing has no AsDiscreted step: no probabilities to threshold")
        self.to_probabilities = Compose(steps[:split])
        self.to_mask = Compose(steps[split:])
        self.model_name = f"SegDINO {parser.get_parsed_content('backbone')} ({Path(self.checkpoint).name})"
        #: the decoder checkpoint's SHA-256: with the model name it tells the SEGs of a retrained model apart
        self.model_id = hashlib.sha256(Path(self.checkpoint).read_bytes()).hexdigest()

    def load(self, path: str | Path, frame: int | None = None) -> dict[str, Any]:
        """The config's ``load`` steps on one file (one ``frame``, from 1, of a multi-frame file).

        Returns:
            ``{"image": (3, H, W) MetaTensor on 0..255}`` with the reader's meta data (pixel size, region, ...).

        Raises:
            InputError: (in the chain of the error) the file cannot be read as an image.
        """
        self.reader.frame = frame
        return self.preprocessing({"image": str(path)}, end=self.load_steps)

    @torch.no_grad()
    def predict(self, items: Sequence[dict[str, Any]], probabilities: bool = False) -> list[Prediction]:
        """The masks of loaded items (:meth:`load`'s output, or a decoded frame in that form), one network call.

        Each item is preprocessed (the config's steps after ``load``) and postprocessed on its own; the network runs
        once on the batch. The items are not changed.

        Args:
            items: loaded images.
            probabilities: also return each image's probabilities (the input of the config's ``AsDiscreted``).

        Returns:
            ``(mask (H, W) uint8, probabilities (C, H, W) float32 or None)`` per item, at the item's size.
        """
        data = [self.preprocessing(dict(item), start=self.load_steps) for item in items]
        images = torch.stack([torch.as_tensor(d["image"]) for d in data]).to(self.device)
        logits = torch.as_tensor(self.inferer(images, self.network)).detach().cpu()
        results: list[Prediction] = []
        for item, logit in zip(data, logits, strict=True):
            item["pred"] = logit
            item = self.to_probabilities(item)
            kept = np.asarray(torch.as_tensor(item["pred"]).float()) if probabilities else None
            mask = np.asarray(torch.as_tensor(self.to_mask(item)["pred"]).cpu()).astype(np.uint8)[0]
            results.append((mask, kept))
        return results

    def segment(self, path: str | Path, frame: int | None = None) -> tuple[MetaTensor, np.ndarray]:
        """Read and segment one image (one ``frame``, from 1, of a multi-frame file).

        Returns:
            The source frame as the bundle's loader gives it, ``(3, H, W)`` on 0..255 with its meta data, and the
            ``(H, W)`` uint8 class-index mask at its size.

        Raises:
            InputError: (in the chain of the error) the file cannot be read as an image.
        """
        loaded = self.load(path, frame)
        source = loaded["image"].clone()
        ((mask, _),) = self.predict([loaded])
        if mask.shape != tuple(source.shape[1:]):
            raise RuntimeError(f"prediction {mask.shape} is not at the image size {tuple(source.shape[1:])}")
        return source, mask

    def __call__(self, path: str | Path, frame: int | None = None) -> np.ndarray:
        """The ``(H, W)`` uint8 class-index mask of one image (see :meth:`segment`)."""
        return self.segment(path, frame)[1]

    def reset(self) -> None:
        """Restart the temporal smoothing of the config's postprocessing (a new video or cine)."""
        from segdino_monai.transforms import TemporalSmoothd

        for step in self.to_probabilities.transforms:
            step = getattr(step, "transform", step)  # unwrapped from its Switchable
            if isinstance(step, TemporalSmoothd):
                for smoother in step.smoothers.values():
                    smoother.reset()

    @staticmethod
    def network_for_export(
        bundle_root: str | Path | None = None,
        backbone_weights: str | None = None,
        checkpoint: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """The network of the bundle's ``inference.json`` (its ``network_def``) with the decoder loaded, in float32.

        Only ``network_def`` is built (no reader, transforms or inferer); the decoder file is checked before the
        backbone loads (seconds to minutes for the large ViTs).

        Args:
            bundle_root: the bundle folder (default: found from the working directory).
            backbone_weights: DINOv3 weights (default: the bundle's); ``"random"`` for tests.
            checkpoint: the decoder checkpoint (default: the bundle's ``models/model.pt``).
            overrides: further config overrides (``{"network_def#backbone_kwargs": {...}}``, ``num_classes``, ...).

        Returns:
            The SegDINO in eval mode on the CPU, and the settings an export records in its metadata.
        """
        from segdino_monai.workflows import bundle_workflow, require_file

        # a non-empty dataset_dir makes a missing weights file an error rather than the demo's random backbone
        settings = {"backbone_weights": backbone_weights, "dataset_dir": "export", "backbone_precision": "float32"}
        workflow = bundle_workflow("infer", bundle_root, **{**settings, **dict(overrides or {})})
        parser = workflow.parser
        parser.parse()
        path = require_file(
            checkpoint or f"{parser.get_parsed_content('ckpt_dir')}/model.pt", "Trained decoder", _TRAIN_FIRST
        )
        network = parser.get_parsed_content("network_def")
        network.load_decoder(path)
        network.eval()
        info = {
            "network": f"SegDINO {parser.get_parsed_content('backbone')} ({Path(path).name})",
            "backbone": network.backbone.arch,
            "backbone_weights": network.backbone.weights_source,
            "num_classes": network.out_channels,
            "patch_size": network.patch_size,
            "activation": "sigmoid" if network.out_channels == 1 else "softmax",
            "threshold": str(parser.get_parsed_content("threshold")),
            "mean": "0.485,0.456,0.406",
            "std": "0.229,0.224,0.225",
            "input": "image (B, 3, H, W) float32, RGB on 0..1 normalised by mean/std; H, W multiples of 16",
            "output": "logits (B, num_classes, H, W) float32",
        }
        return network, info
