"""segdino-monai: SegDINO-style segmentation (frozen DINOv3, feature aligner, tiny MLP decoder) for MONAI.

The package is layered: each sub-package imports only from the ones before it in :data:`LAYERS` (imports inside
functions count too; ``tests/test_layers.py`` checks every module). Bottom first:

- ``utils``: errors, typed options, atomic files and JSON, distributed rank helpers, output naming.
- ``io``: files <-> arrays, no model: pictures, the DICOM image reader and cine timing, ultrasound regions, masks,
  mask and overlay writers.
- ``dicom``: DICOM objects only, one module per kind: SEG, SC, SR, source repairs, UIDs.
- ``data``: dataset layouts, pairing, splits, validation, demo data, datalist writing and reading.
- ``networks``: the DINOv3 backbone adapter, blocks, SegDINO, ONNX Runtime; ``weights/`` (layouts, hashes, loading).
- ``metrics``: the uncertainty maths and its MONAI metric (below transforms: ``SaveUncertaintyd`` needs the maths).
- ``transforms``: array and dictionary transforms, per modality, and postprocessing; files only through ``io``.
- ``inferers``: the test-time augmentation inferer.
- ``workflows``: bundle plumbing: config checks, the feature cache, inference accounting, running a config.
- ``reporting``: the evaluation report (HTML page, figures, curves).
- ``handlers``: Ignite handlers of the bundle's workflows.
- ``services``: what serves the model: the DICOM batch run, DICOM node and sender, DICOMweb, video, cine loops.
- ``apps``: the MONAI Label app.
- ``tools``: benchmarks and export.
- ``cli``: the ``segdino`` command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.5.1"

#: the sub-packages, bottom first (see the module docstring): each imports only from those before it.
LAYERS: tuple[str, ...] = (
    "utils",
    "io",
    "dicom",
    "data",
    "networks",
    "metrics",
    "transforms",
    "inferers",
    "workflows",
    "reporting",
    "handlers",
    "services",
    "apps",
    "tools",
    "cli",
)

# sub-packages that ``import segdino_monai`` reaches lazily (``segdino_monai.workflows.find_bundle_root()`` in a
# bundle ``$`` expression after a plain ``$import segdino_monai``)
_SUBPACKAGES = LAYERS


def __getattr__(name: str) -> ModuleType:
    """Import sub-packages on first use.

    ``import segdino_monai`` stays light, and bundle ``$`` expressions can write
    ``segdino_monai.workflows.find_bundle_root()`` after a plain ``$import segdino_monai``.
    """
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
