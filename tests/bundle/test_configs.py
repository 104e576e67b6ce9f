"""The configs define each step once: the endoscopy defaults inline in train.json and inference.json are exactly
configs/endoscopy.json's, every modality file holds the same lists, and every step is a `_target_` component."""

from __future__ import annotations

import json

import pytest

from tests.bundle.conftest import CONFIGS

MODALITY_KEYS = {"modality", "preprocessing_modality", "cleanup", "after_resize", "augmentation"}


def _read(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


@pytest.mark.parametrize("modality", ["ultrasound", "endoscopy", "dermoscopy"])
def test_a_modality_file_holds_its_steps_and_nothing_else(modality):
    config = _read(f"{modality}.json")
    assert set(config) == MODALITY_KEYS
    assert config["modality"] == config["preprocessing_modality"] == modality
    for key in ("cleanup", "after_resize", "augmentation"):
        assert all("_target_" in step for step in config[key]), key


def test_the_inline_defaults_are_endoscopy_json():
    endoscopy = _read("endoscopy.json")
    train, inference = _read("train.json"), _read("inference.json")
    for key in MODALITY_KEYS:
        assert train[key] == endoscopy[key], key
    for key in MODALITY_KEYS - {"augmentation"}:  # inference does not augment
        assert inference[key] == endoscopy[key], key
    for key in ("keys", "threshold", "image_reader", "load_image", "ensure_rgb", "to_model_input", "finish"):
        assert inference[key] == train[key], key  # one definition of each shared step
