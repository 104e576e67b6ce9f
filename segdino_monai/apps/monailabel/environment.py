"""The MONAI Label environment: a separate virtual environment, created (or reused) by one command.

monailabel 0.8.5 cannot share the main environment: it needs numpy<2 and pydicom<3 (pydicom-seg), and its
inference breaks on monai 1.6 (``Spacingd``), so it gets monai 1.5.2. Our package goes in editable and without
the ``dicom`` extra (highdicom needs pydicom 3). Nothing installed is patched.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

from segdino_monai.utils.atomic import write_json
from segdino_monai.utils.errors import InputError

__all__ = ["MARKER", "REQUIREMENTS", "PINNED", "env_python", "ensure_label_env", "installed_versions", "repo_root"]

logger = logging.getLogger(__name__)

# What the environment holds besides our package; ``PINNED`` are the versions checked on reuse.
REQUIREMENTS = ("monailabel==0.8.5", "monai==1.5.2", "numpy<2", "pydicom<3", "timm")
PINNED = {"monailabel": "0.8.5", "monai": "1.5.2"}
MAJOR_BELOW = {"numpy": 2, "pydicom": 3}
MARKER = "segdino-label-env.json"
_VERSIONS_SCRIPT = (
    "import json, importlib.metadata as m; "
    "print(json.dumps({n: m.version(n) for n in ('monailabel', 'monai', 'numpy', 'pydicom', 'torch', 'timm', "
    "'segdino-monai')}))"
)


def repo_root() -> Path:
    """The source checkout holding this package (for the editable install)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"segdino-monai's source checkout not found at {root} (no pyproject.toml): the MONAI Label environment "
            "installs the package from its checkout, so run from a clone (pip install -e .)."
        )
    return root


def env_python(path: str | Path) -> Path:
    """The Python interpreter of the environment at ``path``."""
    return Path(path) / "bin" / "python"


def installed_versions(path: str | Path) -> dict[str, str]:
    """Versions of the key packages installed in the environment (empty when one is missing)."""
    python = env_python(path)
    if not python.is_file():
        return {}
    result = subprocess.run([str(python), "-c", _VERSIONS_SCRIPT], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        logger.debug("version check failed in %s: %s", path, result.stderr.strip()[-500:])
        return {}
    return json.loads(result.stdout)


def _versions_ok(versions: dict[str, str]) -> bool:
    if not versions:
        return False
    if any(versions.get(name) != version for name, version in PINNED.items()):
        return False
    return all(int(versions[name].split(".")[0]) < major for name, major in MAJOR_BELOW.items())


def _wanted(source: Path) -> dict[str, object]:
    return {"requirements": list(REQUIREMENTS), "package": str(source)}


def _read_marker(path: Path) -> dict[str, object]:
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def ensure_label_env(path: str | Path = ".venv-label", python: str | None = None, force: bool = False) -> Path:
    """Create the MONAI Label environment at ``path``, or reuse it when its marker and versions match.

    Args:
        path: the environment folder.
        python: the interpreter to create it with (default: the running one's base Python, 3.10 to 3.12).
        force: reinstall even when the environment looks complete.

    Returns:
        The environment folder (absolute).

    Raises:
        InputError: when ``path`` is a file or ``python`` cannot create a virtual environment.
        RuntimeError: when pip fails or the result does not hold the pinned versions (pip's output is logged).
    """
    path = Path(path).resolve()
    if path.exists() and not path.is_dir():
        raise InputError(f"--path {path} is a file, not an environment folder: choose another folder")
    source = repo_root()
    wanted = _wanted(source)
    if not force and _read_marker(path).get("spec") == wanted:
        versions = installed_versions(path)
        if _versions_ok(versions):
            logger.info("MONAI Label environment %s is ready (%s)", path, _describe(versions))
            return path
        logger.info("MONAI Label environment %s has other versions (%s): reinstalling", path, versions)
    start = time.monotonic()
    if not env_python(path).is_file():
        _create(path, python)
    (path / MARKER).unlink(missing_ok=True)
    _pip(path, "install", "--upgrade", "pip")
    _pip(path, "install", *REQUIREMENTS, "-e", str(source))
    versions = installed_versions(path)
    if not _versions_ok(versions):
        raise RuntimeError(f"The MONAI Label environment {path} does not hold the pinned versions: {versions}")
    write_json({"spec": wanted, "versions": versions}, path / MARKER, newline=False, default=None)
    logger.info("MONAI Label environment %s built in %.0f s (%s)", path, time.monotonic() - start, _describe(versions))
    return path


def _describe(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _create(path: Path, python: str | None) -> None:
    logger.info("creating the MONAI Label environment %s", path)
    if python:
        try:
            subprocess.run([python, "-m", "venv", str(path)], check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise InputError(
                f"--python {python}: cannot create a virtual environment with it ({err}); give a Python 3.10 to 3.12 "
                "interpreter"
            ) from err
    elif sys.prefix != sys.base_prefix:  # inside a venv: create from its base interpreter
        subprocess.run([_base_python(), "-m", "venv", str(path)], check=True)
    else:
        venv.EnvBuilder(with_pip=True).create(path)


def _base_python() -> str:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path(sys.base_prefix) / "bin" / version, Path(sys.base_prefix) / "bin" / "python3"):
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def _pip(path: Path, *args: str) -> None:
    command = [str(env_python(path)), "-m", "pip", *args]
    logger.info("%s", " ".join(command))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        logger.error("pip output:\n%s\n%s", result.stdout[-5000:], result.stderr[-5000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        reason = errors[-1] if errors else (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(
            f"pip failed ({result.returncode}) while building the MONAI Label environment {path} "
            f"({' '.join(args)}): {reason}. It needs the package registry and about 8 GB of free disk."
        )
