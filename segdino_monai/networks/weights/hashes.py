"""Checking a weights file against the SHA-256 prefix in its name, with the hash cached by size and modification time.

Meta's DINOv3 files follow torch.hub's naming convention: the name ends in the first hex digits of the file's SHA-256
(``dinov3_vits16_pretrain_lvd1689m-08c60483.pth``). A truncated or corrupted download keeps its name but not its
hash, so the name is checked before the file is used. torch.hub checks it only while downloading
(``download_url_to_file(hash_prefix=...)``), never for a file already on disk, hence this module. Hashing a large
file takes seconds, so each file's SHA-256 is kept in a small JSON in the user's cache folder, valid while the file's
size and modification time are unchanged; the cache is an optimisation only and is never required.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from segdino_monai.utils.atomic import write_json
from segdino_monai.utils.errors import InputError

__all__ = ["HASH_SUFFIX", "check_name_hash", "file_sha256", "hash_cache_file", "name_hash_prefix"]

logger = logging.getLogger(__name__)

#: torch.hub's convention (its ``HASH_REGEX``), limited to weight files: ``<name>-<hex digits of SHA-256>.pth``.
HASH_SUFFIX = re.compile(r"-(?P<prefix>[0-9a-f]{8,64})\.pth?$")
_CHUNK = 1 << 20


def hash_cache_file() -> Path:
    """Where the hashes are cached: ``weights-sha256.json`` in ``$SEGDINO_CACHE_DIR``.

    By default that folder is ``$XDG_CACHE_HOME/segdino-monai`` (``~/.cache/segdino-monai``).
    """
    own = os.environ.get("SEGDINO_CACHE_DIR")
    root = Path(own) if own else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segdino-monai"
    return root / "weights-sha256.json"


def name_hash_prefix(path: str | Path) -> str | None:
    """The SHA-256 prefix a file's name carries (``08c60483`` for ``...-08c60483.pth``), or ``None``."""
    found = HASH_SUFFIX.search(Path(path).name)
    return found["prefix"] if found else None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, from the cache while the file's size and modification time are unchanged.

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key, stamp = str(path), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = _read_cache()
    entry = cache.get(key)
    if isinstance(entry, dict) and {k: entry.get(k) for k in stamp} == stamp and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = _sha256(path)
    cache[key] = {**stamp, "sha256": digest}
    _write_cache(cache)
    return digest


def check_name_hash(path: str | Path) -> str | None:
    """Check a file against the SHA-256 prefix in its name; without one, say that it could not be checked.

    Args:
        path: the weights file.

    Returns:
        The file's SHA-256 when its name carries a prefix (and it matches), else ``None``.

    Raises:
        InputError: naming the file, both hashes and what to do, when the content does not match its name.
    """
    prefix = name_hash_prefix(path)
    if prefix is None:
        logger.info(
            "%s: its name carries no SHA-256 prefix (Meta's names end in -<8 hex digits>.pth), so its content could "
            "not be checked; `segdino check-weights` prints its SHA-256 to compare with the publisher's.",
            path,
        )
        return None
    digest = file_sha256(path)
    if not digest.startswith(prefix):
        raise InputError(
            f"{path}: its SHA-256 starts with {digest[: len(prefix)]}, but its name says {prefix}: the file is "
            "truncated or corrupted (an interrupted or failed download?). Download it again; a file you know to "
            "be good but renamed wrongly loads once its name no longer ends in -<hash>.pth."
        )
    logger.info("%s matches the SHA-256 prefix in its name (%s)", path, prefix)
    return digest


def _sha256(path: Path) -> str:
    # hashlib.file_digest would do, but it is Python 3.11+ and the package supports 3.10.
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_cache() -> dict:
    try:
        cache = json.loads(hash_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no cache yet, unreadable or corrupt: hash again
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(cache: dict) -> None:
    try:
        write_json(cache, hash_cache_file(), indent=1, sort_keys=True, newline=False, default=None)
    except OSError as err:  # a read-only home or a full disk costs a rehash next time, nothing more
        logger.debug("could not write the weights hash cache %s: %s", hash_cache_file(), err)
