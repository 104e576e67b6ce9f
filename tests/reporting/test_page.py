from __future__ import annotations

import base64
import csv
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdino_monai.cli import main
from segdino_monai.reporting import write_report

PNG_PREFIX = "data:image/png;base64,"


class _Page(HTMLParser):
    """The tables (by class), image sources and figure captions of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.captions: list[str] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "figcaption":
            self.captions.append("".join(self._caption))
            self._caption = None

    def handle_data(self, data):
        for buffer in (self._cell, self._caption):
            if buffer is not None:
                buffer.append(data)


def _csv(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics_per_image.csv", newline="") as f:
        return list(csv.DictReader(f))


def _shown(value: str, decimals: int) -> str:
    number = float(value)
    return "n/a" if math.isnan(number) else f"{number:.{decimals}f}"


def test_report_lists_every_image_with_the_csv_numbers(evaluated_run):
    rows = _csv(evaluated_run)
    page = _Page((evaluated_run / "report.html").read_text())

    table = page.tables["per-image"]
    assert table[0] == ["rank", "image", "Dice", "IoU", "HD95 (px)"]
    assert len(table) - 1 == len(rows) > 0
    expected = {Path(r["filename"]).name: r for r in rows}
    for cells in table[1:]:
        row = expected.pop(cells[1])
        assert cells[2:] == [
            _shown(row["test_mean_dice"], 4),
            _shown(row["test_mean_iou"], 4),
            _shown(row["test_hd95"], 2),
        ]
    assert not expected
    dice_shown = [float(c[2]) for c in table[1:]]
    assert dice_shown == sorted(dice_shown)  # worst first

    summary = {r[0]: r for r in page.tables["summary"]}
    dice = np.array([float(r["test_mean_dice"]) for r in rows])
    assert summary["Dice"][1] == f"{dice.mean():.4f}"
    assert summary["Dice"][2] == f"{np.median(dice):.4f}"
    assert summary["Dice"][4] == f"{dice.min():.4f}"


def test_report_embeds_its_figures_and_writes_the_markdown_twin(evaluated_run):
    page = _Page((evaluated_run / "report.html").read_text())
    files = sorted((evaluated_run / "report_files").glob("*.png"))
    rows = _csv(evaluated_run)
    cases = min(4, len(rows))
    names = {f.stem for f in files}
    assert {"distributions", "training_curves", "worst_1", "best_1"} <= names
    assert len([n for n in names if n.startswith("worst")]) == cases
    assert len(page.images) == len(files)
    for source in page.images:
        assert source.startswith(PNG_PREFIX)  # self-contained: nothing to fetch
        with Image.open(io.BytesIO(base64.b64decode(source[len(PNG_PREFIX) :]))) as picture:
            assert picture.format == "PNG" and picture.width >= 600
    worst = min(rows, key=lambda r: float(r["test_mean_dice"]))
    worst_name, worst_dice = Path(worst["filename"]).name, _shown(worst["test_mean_dice"], 4)
    assert page.captions[1].startswith(f"worst 1: {worst_name} (Dice {worst_dice}")
    markdown = (evaluated_run / "report.md").read_text()
    for f in files:
        assert f"](report_files/{f.name})" in markdown
    table = [line.strip("| ").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    per_image = {cells[1]: cells[2] for cells in table if cells[0].isdigit()}
    assert per_image == {Path(r["filename"]).name: _shown(r["test_mean_dice"], 4) for r in rows}


def test_report_shows_the_masks_that_were_scored(evaluated_run):
    for row in _csv(evaluated_run):
        stem = Path(row["filename"]).stem
        reference = np.asarray(Image.open(evaluated_run / "predictions" / f"{stem}_label.png")) > 0
        prediction = np.asarray(Image.open(evaluated_run / "predictions" / f"{stem}_mask.png")) > 0
        total = reference.sum() + prediction.sum()
        dice = 2 * (reference & prediction).sum() / total if total else 1.0
        assert float(row["test_mean_dice"]) == pytest.approx(dice, abs=1e-5)


def test_segdino_report_regenerates_the_page(evaluated_run, tmp_path):
    before = _Page((evaluated_run / "report.html").read_text()).tables["per-image"]
    (evaluated_run / "report.html").unlink()
    assert main(["report", str(evaluated_run), "--cases", "2"]) == 0
    page = _Page((evaluated_run / "report.html").read_text())
    assert page.tables["per-image"] == before
    assert sorted(p.stem for p in (evaluated_run / "report_files").glob("worst_*.png")) == ["worst_1", "worst_2"]
    assert main(["report", str(tmp_path)]) == 2  # not an evaluation folder: a clear error, no traceback


def test_missing_masks_are_noted_not_fatal(evaluated_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics_per_image.csv").write_text((evaluated_run / "metrics_per_image.csv").read_text())
    text = Path(write_report(run)).read_text()
    notes, training, every = (text.index(f"<h2>{h}</h2>") for h in ("Notes", "Training", "Every image"))
    assert text.index("is missing: evaluate again") > notes  # each note under its own section
    assert training < text.index("No training logs") < every
    assert len(_Page(text).tables["per-image"]) - 1 == len(_csv(evaluated_run))


def test_training_curves_come_from_the_epoch_metrics_file(evaluated_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics_per_image.csv").write_text((evaluated_run / "metrics_per_image.csv").read_text())
    epochs = json.loads((evaluated_run / "epoch_metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]  # the 2-epoch training of the fixture run
    assert all(e["loss"] > 0 and 0 <= e["metrics"]["val_mean_dice"] <= 1 for e in epochs)
    best = max(epochs, key=lambda e: e["metrics"]["val_mean_dice"])
    assert main(["report", str(run), "--epoch-metrics", str(evaluated_run / "epoch_metrics.json")]) == 0
    caption = next(c for c in _Page((run / "report.html").read_text()).captions if c.startswith("Training loss"))
    assert f"Best validation Dice {best['metrics']['val_mean_dice']:.4f} at epoch {best['epoch']}" in caption

    (run / "epoch_metrics.json").write_text("{not json")
    text = Path(write_report(run)).read_text()  # a damaged file: noted under Training, the rest of the page stays
    assert text.index("<h2>Training</h2>") < text.index("is not an epoch metrics file") < text.index("Every image")
    assert len(_Page(text).tables["per-image"]) - 1 == len(_csv(evaluated_run))
