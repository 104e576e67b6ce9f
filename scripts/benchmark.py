"""Speed and memory benchmark (a thin wrapper of ``segdino bench``); writes benchmark.json and benchmark.md.

python scripts/benchmark.py --out runs/benchmark --data-dir ../shared/fixtures/endoscopy/kvasir_seg_256
"""

from __future__ import annotations

import sys

from segdino_monai.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
