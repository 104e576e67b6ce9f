"""Checking a dataset folder before training: unpaired, unreadable and mismatched files, reported by name."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from segdino_monai.data.layouts import LayoutScan
from segdino_monai.data.pairing import Pair, Problem
from segdino_monai.io.images import verify_image

__all__ = ["DatasetReport", "check_image", "validate_scan"]

logger = logging.getLogger(__name__)


def check_image(path: Path) -> tuple[int, int]:
    """The (width, height) of an image file, after checking that its data is complete and within the pixel limit.

    Read the way training reads it (:mod:`segdino_monai.io.images`: TIFFs through tifffile, the decompression-bomb
    limit ``SEGDINO_MAX_IMAGE_PIXELS``). PNG files are checked chunk by chunk with their CRCs without decoding; JPEG
    files are decoded at 1/8 scale (cheap, but a truncated file still fails); other formats are decoded in full.

    Raises:
        InputError: naming the file, when it is missing, empty, truncated, corrupt, not an image, or too large.
    """
    return verify_image(path)


@dataclass
class DatasetReport:
    """The problems found in a dataset folder.

    Attributes:
        root: the dataset folder.
        layout: the layout it was read with.
        num_pairs: how many pairs were checked.
        problems: every problem, each naming its file.
        bad_pairs: the pairs with a problem (skipped with ``--skip-bad``), keyed by image path.
    """

    root: Path
    layout: str
    num_pairs: int = 0
    problems: list[Problem] = field(default_factory=list)
    bad_pairs: dict[Path, Pair] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    def good_pairs(self, pairs: Iterable[Pair]) -> list[Pair]:
        """The pairs without a problem."""
        return [p for p in pairs if p.image not in self.bad_pairs]

    def summary(self, limit: int = 50) -> str:
        """A readable list of the problems (at most ``limit`` lines of files), with paths relative to the root."""
        if self.ok:
            return f"{self.root}: {self.num_pairs} pairs, no problem"
        lines = [
            f"{self.root} ({self.layout} layout): {len(self.problems)} problem(s) in {self.num_pairs} pairs "
            f"({len(self.bad_pairs)} bad pair(s)):"
        ]
        for problem in self.problems[:limit]:
            lines.append(f"  {problem.kind}: {_relative(problem.path, self.root)}: {problem.detail}")
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _detail(error: ValueError, path: Path) -> str:
    """The error's message without the leading file name (the report names the file already)."""
    text = str(error)
    return text[len(f"{path}: ") :] if text.startswith(f"{path}: ") else text


def validate_scan(scan: LayoutScan) -> DatasetReport:
    """Check every pair of a scan: each file readable, each mask the size of its image.

    The scan's own problems (unpaired images and masks, ambiguous names) come first in the report.
    """
    report = DatasetReport(root=scan.root, layout=scan.layout, num_pairs=len(scan.pairs))
    report.problems += scan.problems
    for pair in scan.pairs:
        problems = []
        try:
            image_size = check_image(pair.image)
        except ValueError as err:
            problems.append(Problem("unreadable", pair.image, _detail(err, pair.image)))
            image_size = None
        for label in pair.labels:
            try:
                label_size = check_image(label)
            except ValueError as err:
                problems.append(Problem("unreadable", label, _detail(err, label)))
                continue
            if image_size is not None and label_size != image_size:
                detail = f"mask is {label_size[0]}x{label_size[1]} but image {pair.image.name} is "
                detail += f"{image_size[0]}x{image_size[1]} (width x height)"
                problems.append(Problem("size mismatch", label, detail))
        if problems:
            report.problems += problems
            report.bad_pairs[pair.image] = pair
    logger.debug("checked %d pairs in %s: %d problem(s)", report.num_pairs, scan.root, len(report.problems))
    return report
