"""Test-time augmentation (TTA): the prediction averaged over flipped and rescaled views of the image.

Each view is a transform of the model input (a horizontal and/or vertical flip, a rescale), the network's output on
it is turned into probabilities, the view's transform is undone on the probabilities (flipped back, resized back),
and the probabilities of all views are averaged. Averaging probabilities rather than logits keeps the result a
probability map that the usual threshold or argmax turns into a mask, and whose entropy
(:func:`segdino_monai.metrics.uncertainty.entropy_map`) grows where the views disagree.

:class:`TTAInferer` is a MONAI ``Inferer``: a drop-in for the bundle's inferer (``--set tta=true``). Its output is the
*logits of the averaged probabilities* (log-odds for one channel, log-probabilities for several), so that the
postprocessing's sigmoid or softmax gives back exactly the average. :class:`TTAPredictiond` runs it in an
evaluation's postprocessing, beside the plain prediction, for the TTA columns of the evaluation table.

MONAI's ``monai.data.TestTimeAugmentation`` is not used: it draws random invertible transforms per sample through
its own data loader and inverts them on the data dictionary, a whole preprocessing pass per view. Here the views are
a few fixed flips and scales of the model input, sent through the network as one batch inside the bundle's own
inferer, so TTA adds network calls only and works wherever the inferer runs (evaluation, inference, DICOM, video).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import Transform

from segdino_monai.utils.errors import InputError

__all__ = ["FLIPS", "TTAInferer", "TTAPredictiond"]

FLIPS: dict[str, tuple[int, ...]] = {"horizontal": (-1,), "vertical": (-2,), "both": (-2, -1)}
"""The flips a view can apply, by name, and the tensor dimensions each flips (columns, rows, both)."""


class TTAInferer(Inferer):
    """Average the probabilities of the views: each scale, unflipped and with each flip.

    The views are ``len(scales) * (1 + len(flips))``; the default (flips horizontal and vertical, scale 1) is three:
    the image, its mirror image and the image upside down. The views of one scale go through the network as one
    batch.

    Args:
        inferer: the inferer each view goes through (e.g. the bundle's ``SlidingWindowInferer``); default: the
            network called on the view.
        flips: the flips, by name (:data:`FLIPS`: ``horizontal``, ``vertical``, ``both``); each gives one view per
            scale besides the unflipped one.
        scales: the input scales (1.0 is the model input as it is). A view at scale ``s`` resizes the input to
            ``s`` times its height and width (bilinear, antialiased when shrinking), rounded to a multiple of
            ``size_multiple``, and its probabilities back to the input's size (bilinear).
        sigmoid: one output channel of foreground logits (a binary model); ``False``: several channels of class
            logits, softmax over the channels.
        size_multiple: a rescaled view's height and width are multiples of this (the backbone's patch size).

    Raises:
        InputError: an unknown flip, a scale that is not a positive number, or no scale at all.

    Example::

        inferer = TTAInferer(SlidingWindowInferer(roi_size=(256, 256)), flips=["horizontal"], scales=[0.75, 1.0])
        logits = inferer(images, network)  # sigmoid(logits) is the mean of the four views' probabilities
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        flips: Sequence[str] = ("horizontal", "vertical"),
        scales: Sequence[float] = (1.0,),
        sigmoid: bool = True,
        size_multiple: int = 16,
    ) -> None:
        self.inferer = inferer
        self.flips = [_flip_dims(name) for name in _as_list(flips, "tta_flips")]
        self.scales = [_scale(value) for value in _as_list(scales, "tta_scales")]
        if not self.scales:
            raise InputError("Option tta_scales is empty: give at least one scale, e.g. [1.0].")
        self.sigmoid = bool(sigmoid)
        self.size_multiple = int(size_multiple)

    @property
    def num_views(self) -> int:
        """The number of views averaged."""
        return len(self.scales) * (1 + len(self.flips))

    def __call__(
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        *args: Any,
        identity: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The logits of the views' averaged probabilities, ``(B, C, H, W)`` float32 as the inputs' ``(H, W)``.

        Args:
            inputs: the model input, ``(B, channels, H, W)``.
            network: the model.
            args: passed on to the inferer (or the network).
            identity: the network's logits on ``inputs`` as they are, when already computed: the unflipped view at
                scale 1 is not computed again.
            kwargs: passed on to the inferer (or the network).
        """
        fg, bg = self._average(inputs, network, identity, *args, **kwargs)
        tiny = torch.finfo(fg.dtype).tiny
        logits = fg.clamp_min(tiny).log() - (bg.clamp_min(tiny).log() if bg is not None else 0.0)
        return logits.float()

    def probabilities(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The views' averaged probabilities, ``(B, C, H, W)`` float32 (the foreground probability for one channel)."""
        return self._average(inputs, network, None, *args, **kwargs)[0].float()

    def _average(
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        identity: torch.Tensor | None,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sum over the views of the probabilities (float64) divided by the number of views.

        For one channel, the foreground and the background probabilities are averaged separately, each from its own
        ``sigmoid(+-z)``: their ratio gives the log-odds without the cancellation of ``1 - p`` where ``p`` is near 1.
        """
        size = inputs.shape[-2:]
        fg: Any = 0.0
        bg: Any = 0.0
        for scale in self.scales:
            flips = [()] + self.flips
            known = identity if scale == 1.0 else None
            if known is not None:
                flips = flips[1:]
            outputs = [known] if known is not None else []
            if flips:
                view = self._resize(inputs, _scaled(size, scale, self.size_multiple), inputs=True)
                batch = torch.cat([torch.flip(view, dims) if dims else view for dims in flips])
                logits = self._run(batch, network, *args, **kwargs)
                outputs += [
                    torch.flip(part, dims) if dims else part
                    for dims, part in zip(flips, logits.chunk(len(flips)), strict=True)
                ]
            for logits in outputs:
                logits = logits.to(torch.float64)
                if self.sigmoid:
                    pair = self._resize(torch.sigmoid(logits), size), self._resize(torch.sigmoid(-logits), size)
                else:
                    pair = self._resize(torch.softmax(logits, dim=1), size), None
                fg = fg + pair[0]
                bg = bg + pair[1] if pair[1] is not None else None
        return fg / self.num_views, (bg / self.num_views if bg is not None else None)

    def _run(
        self, batch: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        output = (
            self.inferer(batch, network, *args, **kwargs)
            if self.inferer is not None
            else network(batch, *args, **kwargs)
        )
        return torch.as_tensor(output)

    @staticmethod
    def _resize(image: torch.Tensor, size: Sequence[int], inputs: bool = False) -> torch.Tensor:
        if tuple(image.shape[-2:]) == tuple(size):
            return image
        shrinking = inputs and size[0] * size[1] < image.shape[-2] * image.shape[-1]
        return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)


class TTAPredictiond(Transform):
    """Add the TTA prediction of one sample to its data, as an evaluation's postprocessing step.

    The evaluator's prediction (``identity_key``, the plain logits) stays as it is and serves as the unflipped view
    at scale 1; the TTA logits go to ``output_key``, with the plain prediction's meta data, so that the same
    activation, inversion and threshold steps apply to both, and the evaluation scores both.

    Args:
        network: the model (in evaluation mode; the views run without gradients).
        inferer: the :class:`TTAInferer`.
        image_key: the key of the model input, ``(channels, H, W)``.
        identity_key: the key of the plain prediction's logits, ``(C, H, W)``.
        output_key: the key to write the TTA logits to.
        amp: run the views under autocast, as an evaluator with ``amp`` runs the plain prediction.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        inferer: TTAInferer,
        image_key: str = "image",
        identity_key: str = "pred",
        output_key: str = "tta_pred",
        amp: bool = False,
    ) -> None:
        self.network = network
        self.inferer = inferer
        self.image_key = image_key
        self.identity_key = identity_key
        self.output_key = output_key
        self.amp = amp

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """The data with ``output_key`` added."""
        d = dict(data)
        plain = d[self.identity_key]
        device = plain.device
        image = torch.as_tensor(d[self.image_key]).to(device)[None]
        with torch.no_grad(), torch.autocast(device.type, enabled=self.amp):
            logits = self.inferer(image, self.network, identity=torch.as_tensor(plain)[None])[0]
        d[self.output_key] = MetaTensor(logits, meta=dict(plain.meta)) if isinstance(plain, MetaTensor) else logits
        return d


def _as_list(values: Any, name: str) -> list[Any]:
    if isinstance(values, str):
        values = [values] if values.strip() else []
    if not isinstance(values, Sequence):
        raise InputError(f"Option {name} must be a list, e.g. {name}=[...], got {values!r}.")
    return list(values)


def _flip_dims(name: Any) -> tuple[int, ...]:
    dims = FLIPS.get(str(name).strip().lower())
    if dims is None:
        raise InputError(f"Option tta_flips: unknown flip {name!r}; the flips are {', '.join(FLIPS)} (or [] for none).")
    return dims


def _scale(value: Any) -> float:
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not scale > 0 or scale == float("inf"):
        raise InputError(f"Option tta_scales: {value!r} is not a positive number (e.g. tta_scales=[0.75,1.0,1.25]).")
    return scale


def _scaled(size: Sequence[int], scale: float, multiple: int) -> list[int]:
    """``size`` times ``scale``, each side rounded to a multiple of ``multiple`` (at least ``multiple``)."""
    if scale == 1.0:
        return [int(s) for s in size]
    return [max(multiple, round(s * scale / multiple) * multiple) for s in size]
