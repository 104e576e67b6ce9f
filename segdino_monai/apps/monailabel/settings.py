"""The app's own settings (not bundle config ids): automatic retraining, the uncertainty strategy's score.

They are given with ``segdino label-server --set NAME=VALUE`` (checked before the server starts) or MONAI Label's
``--conf NAME VALUE`` (checked when the app starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segdino_monai.utils.errors import InputError

__all__ = ["DEFAULTS", "app_settings"]

DEFAULTS: dict[str, int | float | str] = {
    "retrain_every": 0,
    "retrain_epochs": 5,
    "retrain_val_split": 0.2,
    "uncertainty_score": "segdino_monai.metrics.uncertainty:scalar_uncertainty",
}
_RULES = {
    "retrain_every": (int, 0, None, "a whole number of new final labels, 0 to never retrain automatically"),
    "retrain_epochs": (int, 1, None, "a whole number of epochs, at least 1"),
    "retrain_val_split": (float, 0.0, 0.9, "the validation share, from 0 to 0.9"),
    "uncertainty_score": (str, None, None, "a function as module:function (score(probabilities, mask) -> float)"),
}


def app_settings(*sources: Mapping[str, Any]) -> dict[str, int | float | str]:
    """The app settings from the first source that names each (default otherwise), checked.

    Raises:
        InputError: naming the setting and what it takes, for a value of the wrong kind or out of range.
    """
    settings = {}
    for name, default in DEFAULTS.items():
        value = next((source[name] for source in sources if name in source), default)
        kind, low, high, meaning = _RULES[name]
        if kind is str:
            module, _, function = str(value).partition(":")
            if not (isinstance(value, str) and module and function.isidentifier()):
                raise InputError(f"{name}={value!r}: {name} takes {meaning}.")
            settings[name] = value
            continue
        try:
            number = kind(value)
            if isinstance(value, bool) or (kind is int and float(value) != number):
                raise ValueError(value)
        except (TypeError, ValueError):
            raise InputError(f"{name}={value!r}: {name} takes {meaning}.") from None
        if number < low or (high is not None and number > high):
            raise InputError(f"{name}={value!r}: {name} takes {meaning}.")
        settings[name] = number
    return settings
