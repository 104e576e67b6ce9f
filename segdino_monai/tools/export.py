"""``segdino export``: the bundle's inference network (backbone and folded head) to ONNX or TorchScript, validated.

The exported network is the one ``inference.json`` builds (its ``network_def`` with the decoder checkpoint loaded),
in float32: the frozen DINOv3 backbone, the paper head folded into one 3x3 convolution plus its border-exact bias,
and the bilinear upsampling to the input size. Inputs are ``(B, 3, H, W)`` float32 images normalised as the bundle's
preprocessing leaves them, H and W multiples of 16; outputs the logits ``(B, C, H, W)``.

Validation before the file is kept: ONNX goes through ``onnx.checker`` and then ONNX Runtime (CPU) against PyTorch,
TorchScript is reloaded and run against PyTorch; on random batches of two batch sizes (and, for ONNX, a second image
size) the largest absolute logit difference must be within the tolerance and the masks equal wherever a logit is
farther than the tolerance from the decision boundary. The file is written under a temporary name in a temporary
folder beside the target and moved into place only when it passed, so a failed export leaves nothing behind and a
second export replaces the first whole.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segdino_monai.networks.blocks.folded_head import folded_logits
from segdino_monai.networks.nets.onnx_runtime import METADATA_PREFIX, OnnxRuntimeNetwork, require_modules
from segdino_monai.networks.nets.segdino import SegDINO
from segdino_monai.utils.errors import InputError

__all__ = [
    "FORMATS",
    "ExportMismatch",
    "ExportReport",
    "FoldedSegDINO",
    "check_export",
    "export_network",
    "load_bundle_network",
]

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
#: Largest accepted absolute logit difference between the export and PyTorch (float32 on both sides; measured:
#: 5e-7 for ONNX Runtime with ViT-S/16 at 256x256 and random weights, 0 for TorchScript, 2e-6 for the tiny test ViT).
DEFAULT_TOLERANCE = 1e-4
_OPSET = 18


class ExportMismatch(RuntimeError):
    """The exported model does not give PyTorch's logits within the tolerance (nothing was written)."""


class FoldedSegDINO(nn.Module):
    """SegDINO as inference runs it, in a form the exporters trace: backbone, folded head, upsampling.

    In eval SegDINO caches its folded head and rebuilds it when a parameter changes (checked through data pointers
    and version counters, which an export cannot trace); here the folded weights are plain buffers, computed once.
    A head that does not fold (a variant with norm, activation or hidden layer) runs factorised.

    Args:
        network: a SegDINO with its decoder loaded; its backbone must run in float32.

    Raises:
        ValueError: when the backbone's precision is not float32 (exports are float32).
    """

    def __init__(self, network: SegDINO) -> None:
        super().__init__()
        if network.backbone.precision != "float32":
            raise ValueError(f"exports run the backbone in float32, this one is {network.backbone.precision}")
        self.backbone = network.backbone
        self.align_corners = network.align_corners
        self.head: nn.Module | None = None
        if network.fold_head:
            head = network.folded_head()
            self.register_buffer("weight", head.weight.detach().clone())
            self.register_buffer("bias_kernel", head.bias_kernel.detach().clone())
            self.register_buffer("bias", head.bias.detach().clone())
        else:
            self.head = nn.Sequential(network.aligner, network.decoder)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, H, W)`` for images ``(B, 3, H, W)``."""
        features = self.backbone(image)
        if self.head is None:
            logits = folded_logits(features, self.weight, self.bias_kernel, self.bias)
        else:
            logits = self.head(features)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=self.align_corners)


@dataclass
class ExportReport:
    """What an export wrote and how it compared with PyTorch.

    Attributes:
        path: the written file.
        format: ``onnx`` or ``torchscript``.
        max_abs_diff: the largest absolute logit difference over the validation batches.
        mask_differences: mask pixels that differ where the logit is farther than the tolerance from the boundary.
        checked: the validated input shapes.
        tolerance: the accepted absolute difference.
    """

    path: Path
    format: str
    max_abs_diff: float = 0.0
    mask_differences: int = 0
    checked: list[tuple[int, ...]] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def ok(self) -> bool:
        """Within the tolerance and the same masks."""
        return self.max_abs_diff <= self.tolerance and self.mask_differences == 0


def check_export(path: str | Path, fmt: str) -> Path:
    """Check an export's format, target and modules before any model work.

    The target must be a file name in a folder that exists or can be created; ONNX needs the ``onnx`` extra.

    Raises:
        InputError: for an unknown format, a folder given as the file, a folder that is a file or not writable, or
            a missing ``onnx`` extra.
    """
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: unknown export format; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_modules("onnx", "onnxruntime", "onnxscript", purpose="segdino export --format onnx")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"-o {path} is a folder; give the file to write (e.g. {path / ('model.' + _suffix(fmt))}).")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"-o {path}: {folder} is not a folder, so {path.name} cannot be written there.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"-o {path}: the folder {folder} is not writable; choose another output folder.")
    return path


def _suffix(fmt: str) -> str:
    return "onnx" if fmt == "onnx" else "ts"


def load_bundle_network(
    bundle_root: str | Path | None = None,
    backbone_weights: str | None = None,
    checkpoint: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[SegDINO, dict[str, Any]]:
    """The network of the bundle's ``inference.json`` with the decoder loaded, in float32, and its export metadata.

    The bundle's one predictor loads it (:meth:`~segdino_monai.services.predictor.BundlePredictor.network_for_export`:
    ``network_def`` only, no transforms); see there for the arguments.
    """
    from segdino_monai.services.predictor import BundlePredictor

    return BundlePredictor.network_for_export(bundle_root, backbone_weights, checkpoint, overrides)


def export_network(
    network: SegDINO,
    path: str | Path,
    fmt: str = "onnx",
    image_size: Sequence[int] = (256, 256),
    tolerance: float = DEFAULT_TOLERANCE,
    metadata: dict[str, Any] | None = None,
) -> ExportReport:
    """Export ``network`` (backbone and folded head) to ``path``, validate it, and move it into place.

    Args:
        network: the SegDINO in eval mode with its decoder loaded (float32 backbone).
        path: the file to write (replaced whole if it exists).
        fmt: ``onnx`` (dynamic batch, height and width) or ``torchscript`` (traced; dynamic batch).
        image_size: the example ``(H, W)`` the network is traced at and validated at; multiples of the patch size.
        tolerance: the largest accepted absolute logit difference from PyTorch.
        metadata: settings stored in the file (ONNX ``metadata_props`` ``segdino.*``, TorchScript
            ``segdino.json``).

    Returns:
        What was written and how it compared.

    Raises:
        InputError: a bad path, format or size, or a missing ``onnx`` extra.
        ExportMismatch: the export does not match PyTorch within ``tolerance`` (nothing is written).
    """
    path = check_export(path, fmt)
    height, width = (int(s) for s in image_size)
    patch = network.patch_size
    if height <= 0 or width <= 0 or height % patch or width % patch:
        raise InputError(f"--image-size {height} {width}: both must be positive multiples of the patch size {patch}.")
    model = FoldedSegDINO(network).eval()
    meta = {
        **{k: str(v) for k, v in (metadata or {}).items()},
        "image_size": f"{height},{width}",
        "format": fmt,
        "tolerance": str(tolerance),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        staged = work / path.name
        sample = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
        if fmt == "onnx":
            run = _export_onnx(model, staged, sample, meta, patch)
            # a second size proves the dynamic height and width (two patches more each way)
            shapes = [(1, 3, height, width), (3, 3, height, width), (1, 3, height + 2 * patch, width + 2 * patch)]
        else:
            run = _export_torchscript(model, staged, sample, meta)
            shapes = [(1, 3, height, width), (3, 3, height, width)]
        report = _compare(network, run, shapes, tolerance)
        report.path, report.format = path, fmt
        if not report.ok:
            raise ExportMismatch(
                f"The {fmt} export does not match PyTorch: max absolute logit difference {report.max_abs_diff:.3g} "
                f"(tolerance {tolerance:g}), {report.mask_differences} mask pixel(s) differ; nothing was written."
            )
        _move_into_place(work, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "%s: max absolute logit difference from PyTorch %.3g (tolerance %g) over %s; masks equal",
        path,
        report.max_abs_diff,
        tolerance,
        ", ".join("x".join(str(n) for n in s) for s in report.checked),
    )
    return report


def _export_onnx(
    model: nn.Module, staged: Path, sample: torch.Tensor, meta: dict[str, str], patch: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Write ``staged`` with the dynamo exporter; return a function running it in ONNX Runtime.

    Both of torch's exporters handle timm's DINOv3 (its RoPE grid follows the input size) with a dynamic batch,
    height and width, and both give ONNX Runtime logits within 1e-6 of PyTorch (torch 2.14.1, timm 1.0.31). The
    dynamo exporter (``torch.export``, needs onnxscript) is chosen: it is torch's default since 2.9 while the
    TorchScript-based one is deprecated, and its dynamic sizes are symbolic and guarded (an export that could not
    keep them fails), whereas the legacy tracer warned that it froze Python values computed from tensors in timm's
    code, which happened to be harmless at the sizes we tried.
    """
    import onnx

    batch = torch.export.Dim("batch", min=1, max=4096)
    rows, cols = torch.export.Dim("rows", min=1, max=1024), torch.export.Dim("cols", min=1, max=1024)
    dynamic = {"image": {0: batch, 2: patch * rows, 3: patch * cols}}
    meta = {**meta, "dynamic_axes": f"batch, height, width (multiples of {patch})", "exporter": "torch.onnx dynamo"}
    with torch.no_grad(), _quiet():
        program = torch.onnx.export(
            model,
            (sample,),
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=["image"],
            output_names=["logits"],
            opset_version=_OPSET,
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no program")
    program.model.metadata_props.update({METADATA_PREFIX + k: v for k, v in meta.items()})
    with _quiet():
        program.save(str(staged))  # models over 2 GB (vith16plus) get their weights in <name>.data beside it
    onnx.checker.check_model(str(staged), full_check=True)
    runtime = OnnxRuntimeNetwork(staged, threads=torch.get_num_threads())
    logger.info("onnx.checker: %s is a valid ONNX model (opset %d)", staged.name, _OPSET)
    return runtime


def _export_torchscript(
    model: nn.Module, staged: Path, sample: torch.Tensor, meta: dict[str, str]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Trace ``model`` to ``staged`` (TorchScript cannot script timm's ViT); return the reloaded module.

    The trace keeps the batch dynamic (validated at two batch sizes). PyTorch deprecates TorchScript in favour of
    ``torch.export``; ONNX is the better target where it fits.
    """
    meta = {**meta, "dynamic_axes": "batch", "exporter": "torch.jit.trace"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(model, sample, check_trace=False)
        torch.jit.save(traced, str(staged), _extra_files={"segdino.json": json.dumps(meta, indent=1)})
        loaded = torch.jit.load(str(staged), map_location="cpu")
    return loaded


def _compare(
    network: SegDINO, run: Callable[[torch.Tensor], torch.Tensor], shapes: Sequence[tuple[int, ...]], tolerance: float
) -> ExportReport:
    """Run the PyTorch network (as inference runs it) and the export on random batches of ``shapes``.

    Returns the largest logit difference and the mask disagreement.

    A mask pixel counts as a disagreement only where PyTorch's logit (one channel) or the margin between its two
    best classes is farther than ``tolerance`` from the decision boundary: closer, float rounding alone may flip it.
    """
    report = ExportReport(path=Path(), format="", tolerance=tolerance)
    generator = torch.Generator().manual_seed(1)
    for shape in shapes:
        image = torch.randn(*shape, generator=generator)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated")
            expected, actual = network(image), torch.as_tensor(run(image))
        if actual.shape != expected.shape:
            raise RuntimeError(f"the export gives logits {tuple(actual.shape)} for {shape}, PyTorch {expected.shape}")
        report.max_abs_diff = max(report.max_abs_diff, float((actual - expected).abs().max()))
        if expected.shape[1] == 1:
            differ, margin = (actual > 0) != (expected > 0), expected.abs()
        else:
            top2 = expected.topk(2, dim=1).values
            differ = actual.argmax(1, keepdim=True) != expected.argmax(1, keepdim=True)
            margin = top2[:, :1] - top2[:, 1:]
        report.mask_differences += int((differ & (margin > tolerance)).sum())
        report.checked.append(tuple(shape))
    return report


def _move_into_place(work: Path, path: Path) -> None:
    """Move the staged file (and its external ``.data`` file, if any) onto ``path``; drop a stale ``.data``."""
    data = path.with_name(path.name + ".data")
    staged_data = work / data.name
    if staged_data.exists():
        os.replace(staged_data, data)
    else:
        data.unlink(missing_ok=True)
    os.replace(work / path.name, path)


@contextlib.contextmanager
def _quiet():
    """Keep the exporter's progress prints and warnings out of the command's output (they go to DEBUG)."""
    out = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)  # onnx_ir logs every initialiser it deduplicates at INFO
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
    if out.getvalue().strip():
        logger.debug("%s", out.getvalue().strip())
