"""Start the MONAI Label server on the SegDINO bundle, offline, from the MONAI Label environment.

The app code (``main.py``, ``lib/``) is copied into a working app folder whose ``model/segdino`` is the served
bundle copy: its configs are refreshed from the bundle on every start, its ``models/`` (``model.pt``, what
training updates) is kept. Config overrides for serving (the backbone weights file, anything given with
``--set``) go to ``configs/monailabel.json`` in that copy, which the app's tasks merge after the bundle's configs.

``--studies`` may be a DICOMweb URL: the app's DICOMweb datastore (``lib/dicomweb.py``) lists the series that the
search filter selects (:data:`DEFAULT_SEARCH_FILTER`, our modalities, instead of MONAI Label's CT), and writes the
DICOM SEG of a final label with this environment's interpreter (highdicom), which it is told in
``SEGDINO_LABEL_SEG_PYTHON``.
Training reads backbone features from the feature cache in ``<app_dir>/feature_cache`` by default (``--set
feature_cache=false`` turns it off); ``--set retrain_every=N`` retrains after every N new final labels.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segdino_monai.apps.monailabel.environment import env_python
from segdino_monai.apps.monailabel.settings import app_settings
from segdino_monai.utils.atomic import atomic_write, write_json
from segdino_monai.utils.errors import InputError

__all__ = [
    "DEFAULT_SEARCH_FILTER",
    "FEATURE_CACHE_DIR",
    "MODEL_NAME",
    "OVERRIDES_FILE",
    "dicomweb_environment",
    "is_dicomweb",
    "prepare_app",
    "server_command",
    "server_environment",
]

logger = logging.getLogger(__name__)

MODEL_NAME = "segdino"
OVERRIDES_FILE = "monailabel.json"
FEATURE_CACHE_DIR = "feature_cache"
APP_SOURCE = Path(__file__).resolve().parent
_APP_FILES = ("main.py", "lib")
_BUNDLE_FILES = ("configs", "docs", "LICENSE", "large_files.yml")
_DEFAULT_WEIGHTS = "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
#: QIDO-RS series filter of a DICOMweb datastore: ultrasound, endoscopy, external-camera photography (dermoscopy) and
#: other (secondary captures); a comma-separated value matches any of them (PS3.18 8.3.4.1, Orthanc's plugin too)
DEFAULT_SEARCH_FILTER = {"Modality": "US,ES,XC,OT"}
#: seconds MONAI Label keeps the PACS's series and label lists (its default, 7200, hides new images for two hours)
DEFAULT_DICOMWEB_CACHE_EXPIRY_S = 60


def prepare_app(
    app_dir: str | Path,
    bundle_root: str | Path,
    backbone_weights: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Lay out the app folder: the app code and the bundle copy in ``<app_dir>/model/segdino``.

    Args:
        app_dir: the working app folder (created).
        bundle_root: the bundle to serve (its ``configs/metadata.json`` must exist).
        backbone_weights: the DINOv3 weights file or ``"random"`` (tests only); default: the bundle's
            ``models/`` file.
        overrides: further config ids and values for inference and training (e.g. ``{"modality": "ultrasound"}``).

    Returns:
        The served bundle copy.

    Raises:
        FileNotFoundError: when the bundle or the backbone weights file is missing.
        InputError: when an app setting (``retrain_every``, ...) in ``overrides`` is not valid.
    """
    bundle_root = Path(bundle_root).resolve()
    if not (bundle_root / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"No bundle at {bundle_root} (configs/metadata.json missing): pass --bundle-root.")
    weights = _weights(bundle_root, backbone_weights)
    app_settings(dict(overrides or {}))  # a bad retrain_every (...) stops here, before the server starts
    app_dir = Path(app_dir).resolve()
    app_dir.mkdir(parents=True, exist_ok=True)
    for name in _APP_FILES:
        _replace(APP_SOURCE / name, app_dir / name)
    served = app_dir / "model" / MODEL_NAME
    (served / "models").mkdir(parents=True, exist_ok=True)
    for name in _BUNDLE_FILES:
        if (bundle_root / name).exists():
            _replace(bundle_root / name, served / name)
    source_model, served_model = bundle_root / "models" / "model.pt", served / "models" / "model.pt"
    if not served_model.is_file() and source_model.is_file():
        atomic_write(served_model, lambda tmp: shutil.copy2(source_model, tmp))
    elif served_model.is_file() and source_model.is_file() and not filecmp.cmp(source_model, served_model, False):
        logger.info("keeping the served (trained) %s; delete it to serve %s again", served_model, source_model)
    if not served_model.is_file():
        logger.warning("No trained decoder (%s): training only; restart after it to infer.", source_model)
    config = {
        "backbone_weights": weights,
        # serving never falls back to a random backbone silently: a missing file is an error
        "network_def#weights": "$segdino_monai.networks.weights.resolve.resolve_backbone_weights(@backbone_weights)",
        # retraining after new labels runs the decoder only: backbone features are cached in the app folder
        "feature_cache": True,
        "feature_cache_dir": str(app_dir / FEATURE_CACHE_DIR),
        **dict(overrides or {}),
    }
    write_json(config, served / "configs" / OVERRIDES_FILE, newline=False, default=None)
    logger.info("serving %s as %s", bundle_root, served)
    return served


def _weights(bundle_root: Path, backbone_weights: str | None) -> str:
    if backbone_weights == "random":
        return "random"
    path = Path(backbone_weights) if backbone_weights else bundle_root / "models" / _DEFAULT_WEIGHTS
    if not path.exists():
        raise FileNotFoundError(
            f"DINOv3 backbone weights not found: {path}. Pass --backbone-weights <file> (Meta's or timm's DINOv3 "
            "weights, or a Hugging Face snapshot folder; `segdino check-weights <file>` checks one)."
        )
    return str(path.resolve())


def _replace(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", OVERRIDES_FILE))
    else:
        shutil.copy2(source, target)


def server_command(
    env: str | Path, app_dir: str | Path, studies: str | Path, host: str = "127.0.0.1", port: int = 8000
) -> list[str]:
    """The ``monailabel start_server`` command line: offline (no zoo look-up, no SAM2 download), model ``segdino``.

    It runs ``python -m monailabel.main`` of the environment, as the ``monailabel`` script does, without the
    script's unquoted argument passing (paths with spaces).
    """
    python = env_python(Path(env).resolve())
    studies = str(studies) if is_dicomweb(studies) else str(Path(studies).resolve())
    if not (python.is_file() and (python.parent / "monailabel").is_file()):
        raise FileNotFoundError(
            f"No MONAI Label environment at {Path(env).resolve()}: create it with `segdino label-env --path {env}`."
        )
    return [
        str(python), "-m", "monailabel.main", "start_server",
        "--app", str(Path(app_dir).resolve()),
        "--studies", studies,
        "--host", host,
        "--port", str(port),
        "--conf", "models", MODEL_NAME,
        "--conf", "sam2", "false",
        "--conf", "zoo_source", "github",
    ]  # fmt: skip


def server_environment(env: str | Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables for the server: the environment's ``bin/`` first on PATH, no PYTHONPATH leaking in."""
    variables = dict(os.environ if base is None else base)
    variables.pop("PYTHONPATH", None)
    variables.pop("PYTHONHOME", None)
    bin_dir = str(env_python(Path(env).resolve()).parent)
    variables["PATH"] = os.pathsep.join([bin_dir, variables.get("PATH", "")])
    variables["VIRTUAL_ENV"] = str(Path(env).resolve())
    variables.setdefault("BUNDLE_DOWNLOAD_SRC", "github")
    variables.setdefault("MONAI_ZOO_SOURCE", "github")
    return variables


def is_dicomweb(studies: str | Path) -> bool:
    """Whether ``--studies`` is a DICOMweb URL rather than a folder."""
    return str(studies).startswith(("http://", "https://"))


def dicomweb_environment(app_dir: str | Path, search_filter: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The server's variables for a DICOMweb datastore: MONAI Label's series filter and cache, our SEG writer.

    Args:
        app_dir: the working app folder; the downloaded series are cached in its ``dicomweb-cache``.
        search_filter: QIDO-RS series filter (default :data:`DEFAULT_SEARCH_FILTER`).

    Raises:
        InputError: when this environment cannot write DICOM SEG (highdicom, the ``dicom`` extra, is missing).
    """
    if importlib.util.find_spec("highdicom") is None:
        raise InputError(
            "--studies <dicom-web URL> sends final labels back as DICOM SEG, written with highdicom: install the dicom "
            "extra (pip install 'segdino-monai[dicom]')"
        )
    return {
        "MONAI_LABEL_DICOMWEB_SEARCH_FILTER": json.dumps(dict(search_filter or DEFAULT_SEARCH_FILTER)),
        "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(Path(app_dir).resolve() / "dicomweb-cache"),
        "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": os.environ.get(
            "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY", str(DEFAULT_DICOMWEB_CACHE_EXPIRY_S)
        ),
        "SEGDINO_LABEL_SEG_PYTHON": sys.executable,
    }


def start(  # pragma: no cover - exec replaces the process
    studies: str | Path,
    env: str | Path,
    app_dir: str | Path,
    bundle_root: str | Path,
    backbone_weights: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    search_filter: Mapping[str, Any] | None = None,
) -> None:
    """Prepare the app and replace this process by the MONAI Label server (stop it with Ctrl-C or SIGTERM).

    ``studies`` is a folder of images or a DICOMweb URL (``search_filter`` selects its series).
    """
    variables = server_environment(env)
    if is_dicomweb(studies):
        variables.update(dicomweb_environment(app_dir, search_filter))
    elif search_filter:
        raise InputError("--search-filter selects the series of a DICOMweb server: give --studies a dicom-web URL")
    elif not Path(studies).is_dir():
        raise FileNotFoundError(f"Studies folder not found: {studies}")
    command = server_command(env, app_dir, studies, host, port)
    prepare_app(app_dir, bundle_root, backbone_weights, overrides)
    logger.info("%s", " ".join(command))
    os.execve(command[0], command, variables)
