"""``python -m segdino_monai.cli``: the ``segdino`` command (subprocesses and torchrun start it this way)."""

from __future__ import annotations

import sys

from segdino_monai.cli import main

if __name__ == "__main__":
    sys.exit(main())
