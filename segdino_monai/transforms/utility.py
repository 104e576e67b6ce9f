"""Generic pipeline steps: :class:`Switchable` and :class:`EachKeyd`.

:class:`Switchable` is a step that an on/off option of the bundle switches:
``{"_target_": "...Switchable", "enabled": "@x"}``.

MONAI's own switch, ``"_disabled_": true`` on a config component, takes a literal only and drops the step while the
config is parsed; the bundle's typed options (``--fill_holes true`` as users type it, see
:func:`segdino_monai.utils.options.as_bool`) are references, so the steps they switch are wrapped in this instead. The
step stays visible in the config with all its arguments; turning it off leaves the data untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from monai.transforms import MapTransform, Transform

from segdino_monai.utils.options import as_bool

__all__ = ["EachKeyd", "Switchable"]


class Switchable(Transform):
    """Apply ``transform`` when ``enabled``, else pass the data through unchanged.

    Args:
        transform: the step (any MONAI transform or callable).
        enabled: on or off (a bool, or ``true``/``false``/``1``/``0``/... as typed on a command line).
        name: the option's name, for the error on a value that is neither.
    """

    def __init__(self, transform: Callable[[Any], Any], enabled: Any, name: str = "enabled") -> None:
        self.transform = transform
        self.enabled = as_bool(enabled, name)

    def __call__(self, data: Any) -> Any:
        """``transform(data)`` when enabled, else ``data``."""
        return self.transform(data) if self.enabled else data


class EachKeyd(MapTransform):
    """Base of the dictionary versions that apply one array transform, ``self.transform``, to each key alone.

    A subclass's ``__init__`` calls ``super().__init__(keys, allow_missing_keys)`` and sets ``self.transform``.
    """

    transform: Callable[[Any], Any]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """``data`` with ``self.transform`` applied to each key."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
