"""The package's bottom layer: errors, typed options, atomic files and JSON, distributed rank helpers, naming.

The submodules are imported here so that bundle ``$`` expressions reach them after ``$import segdino_monai``
(``segdino_monai.utils.errors.install_excepthook()``, ``segdino_monai.utils.options.as_bool(...)``).
"""

from __future__ import annotations

from segdino_monai.utils import atomic, distributed, errors, naming, options

__all__ = ["atomic", "distributed", "errors", "naming", "options"]
