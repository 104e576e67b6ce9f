"""Options as people type them: ``true``/``false`` and friends from a command line, checked and named in errors.

``python -m monai.bundle run ... --resume false`` hands the config the *string* ``"false"`` (Python's ``fire`` turns
only ``False`` into a boolean), and a non-empty string is true in Python. Every boolean a bundle config reads goes
through :func:`as_bool`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segdino_monai.utils.errors import InputError

__all__ = ["FALSE_WORDS", "MODALITIES", "TRUE_WORDS", "as_bool", "check_flags"]

#: the modalities the bundle has a config and presets for (``bundle/configs/<modality>.json``)
MODALITIES: tuple[str, ...] = ("ultrasound", "endoscopy", "dermoscopy")

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a boolean: ``True``/``False``, ``1``/``0``, or ``true/false``, ``yes/no``, ``on/off`` in any case.

    Args:
        value: the option's value, as a config or a command line gives it.
        name: the option's name, for the error.

    Raises:
        InputError: naming the option and the accepted spellings, for anything else (``"maybe"``, ``2``, ``None``).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise InputError(
        f"Option {name} must be true or false (also accepted: True/False, 1/0, yes/no, on/off), got {value!r}."
    )


def check_flags(flags: Mapping[str, Any]) -> None:
    """Check several on/off options at once (a bundle's ``initialize``), before a run creates any output.

    Args:
        flags: option names and their values as given.

    Raises:
        InputError: naming the first option that is not a boolean as people type it.
    """
    for name, value in flags.items():
        as_bool(value, name)
