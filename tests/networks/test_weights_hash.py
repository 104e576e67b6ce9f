"""Weight files checked against the SHA-256 prefix in their names (Meta's ``...-08c60483.pth``), hashes cached."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

import pytest
import timm
import torch

from segdino_monai.cli import main
from segdino_monai.networks import DINOv3Backbone
from segdino_monai.networks.weights import hashes as weights_hash
from segdino_monai.utils.errors import InputError
from tests.conftest import TINY_VIT
from tests.networks.dinov3_files import meta_state_dict, tiny_timm_model, write_meta_file


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGDINO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def hash_calls(monkeypatch) -> list:
    """Every file actually hashed (not answered from the cache)."""
    calls = []
    real = weights_hash._sha256

    def counted(path):
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(weights_hash, "_sha256", counted)
    return calls


@pytest.fixture
def meta_named(tmp_path):
    """A Meta-layout file named as Meta names them: the first 8 hex digits of its SHA-256 end the name."""
    path = write_meta_file(tiny_timm_model(), tmp_path / "download.pth")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path.rename(tmp_path / f"dinov3_tiny_pretrain_lvd1689m-{digest[:8]}.pth"), digest


def test_a_file_matching_its_name_loads(meta_named, caplog):
    path, digest = meta_named
    with caplog.at_level(logging.INFO):
        DINOv3Backbone("vits16", weights=path, **TINY_VIT)
    assert f"matches the SHA-256 prefix in its name ({digest[:8]})" in caplog.text


def test_a_file_not_matching_its_name_is_refused_and_loads_once_renamed(meta_named, caplog):
    path, digest = meta_named
    other = write_meta_file(tiny_timm_model(seed=1), path.parent / "other.pth")  # a good file, but not this one
    corrupt = shutil.copy(other, path.parent / f"dinov3_vits16_pretrain_lvd1689m-{digest[:8]}.pth")
    with pytest.raises(InputError, match=rf"{corrupt.name}: its SHA-256 starts with [0-9a-f]{{8}}, but its name says "
                       rf"{digest[:8]}: the file is truncated or corrupted"):  # fmt: skip
        DINOv3Backbone("vits16", weights=corrupt, **TINY_VIT)
    renamed = corrupt.rename(path.parent / "dinov3_vits16_pretrain_lvd1689m.pth")
    with caplog.at_level(logging.INFO):
        DINOv3Backbone("vits16", weights=renamed, **TINY_VIT)
    assert "its name carries no SHA-256 prefix" in caplog.text and "could not be checked" in caplog.text


def test_a_truncated_download_is_told_as_such(meta_named):
    path, _ = meta_named
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated or corrupted"):
        DINOv3Backbone("vits16", weights=path, **TINY_VIT)


def test_the_hash_is_cached_until_the_file_changes(meta_named, hash_calls, cache_home):
    path, digest = meta_named
    assert weights_hash.file_sha256(path) == digest
    DINOv3Backbone("vits16", weights=path, **TINY_VIT)
    assert hash_calls == [path.name]  # the load used the cached hash
    cached = json.loads((cache_home / "weights-sha256.json").read_text())
    assert cached[str(path.resolve())]["sha256"] == digest
    # Same size, new content and modification time (a re-download): hashed again, and now refused.
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    with pytest.raises(InputError, match="truncated or corrupted"):
        DINOv3Backbone("vits16", weights=path, **TINY_VIT)
    assert hash_calls == [path.name, path.name]


def test_an_unwritable_cache_costs_a_rehash_not_a_failure(meta_named, hash_calls, cache_home):
    path, digest = meta_named
    cache_home.write_text("a file where the cache folder should be")
    assert weights_hash.file_sha256(path) == weights_hash.file_sha256(path) == digest
    assert len(hash_calls) == 2


def test_check_weights_prints_the_hash(tmp_path, caplog):
    vits16 = timm.create_model("vit_small_patch16_dinov3_qkvb", pretrained=False, num_classes=0)
    path = tmp_path / "download.pth"
    torch.save(meta_state_dict(vits16), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path = path.rename(tmp_path / f"dinov3_vits16_pretrain_lvd1689m-{digest[:8]}.pth")
    with caplog.at_level(logging.INFO):
        assert main(["check-weights", str(path), "--backbone", "vits16"]) == 0
    assert f"{path} SHA-256 {digest} (matches the {digest[:8]} in its name)" in caplog.text
