from __future__ import annotations

import pytest

from segdino_monai.utils.errors import InputError
from segdino_monai.utils.options import as_bool


@pytest.mark.parametrize("value", [True, 1, "true", "True", "TRUE", " yes ", "Y", "on", "1"])
def test_true_spellings(value):
    assert as_bool(value, "resume") is True


@pytest.mark.parametrize("value", [False, 0, "false", "False", "no", "N", "off", "0"])
def test_false_spellings(value):
    assert as_bool(value, "resume") is False


@pytest.mark.parametrize("value", ["maybe", "", 2, None, 0.5, "ture"])
def test_anything_else_is_refused_naming_the_option(value):
    with pytest.raises(InputError, match=r"Option feature_cache must be true or false.*got"):
        as_bool(value, "feature_cache")
