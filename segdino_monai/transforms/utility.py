"""A pipeline step that an on/off option of the bundle switches: ``{"_target_": "...Switchable", "enabled": "@x"}``.

MONAI's own switch, ``"_disabled_": true`` on a config component, takes a literal only and drops the step while the
config is parsed; the bundle's typed options (``--fill_holes true`` as users type it, see
:func:`segdino_monai.utils.options.as_bool`) are references, so the steps they switch are wrapped in this instead. The
step stays visible in the config with all its arguments; turning it off leaves the data untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monai.transforms import Transform

from segdino_monai.utils.options import as_bool

__all__ = ["Switchable"]


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
