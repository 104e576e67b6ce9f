"""The evaluation report: one self-contained HTML page (figures embedded) and a markdown twin (figures as files).

Everything on the page comes from the run folder (:class:`~segdino_monai.reporting.run_folder.RunFolder`):
``metrics_per_image.csv`` (the numbers), ``metrics_summary.json`` (what was evaluated), the predictions folder (each
case's predicted and reference masks) and the training's ``epoch_metrics.json`` (training curves).
:func:`write_report` can therefore be run again at any time: ``segdino report RUN_DIR``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from segdino_monai.reporting.cases import EvaluatedImage, load_case, rank_cases, read_metrics_csv
from segdino_monai.reporting.curves import TrainingCurves, read_training_curves
from segdino_monai.reporting.figures import case_figure, curves_figure, distributions_figure, metric_label
from segdino_monai.reporting.run_folder import RunFolder
from segdino_monai.reporting.summary import summarise
from segdino_monai.reporting.uncertainty import uncertainty_correlations, uncertainty_figure
from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.errors import InputError
from segdino_monai.utils.naming import display_name, output_names

__all__ = ["write_report"]

logger = logging.getLogger(__name__)

POOR_OVERLAP = 0.5
HOW_TO_READ = (
    ("Dice", "overlap of the predicted and the reference outline: 0 = no overlap, 1 = identical. Higher is better."),
    ("IoU", "intersection over union, a stricter overlap score from 0 to 1. Higher is better."),
    (
        "HD95 (px)",
        "how far apart the two outlines are, in pixels of the evaluated image: 95% of boundary points lie within "
        "this distance of the other outline. Lower is better; 0 = identical. It is undefined (n/a) when the "
        "prediction or the reference is empty; such images are counted but left out of the statistics.",
    ),
    (
        "Uncertainty",
        "how unsure the model is about the image's predicted outline: the mean predictive entropy (0 = certain, "
        "1 = a coin toss) over the predicted object and a 5-pixel band around it. Lower is more confident.",
    ),
)
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left}.context td,.context th{text-align:left}
img{max-width:100%}figure{margin:1em 0}figcaption{font-size:.9em;color:#555}
.warning{background:#fff0f0;border:1px solid #d33;padding:.6em 1em;border-radius:4px}
.note{background:#f6f8fa;border:1px solid #ddd;padding:.6em 1em;border-radius:4px}
tr.worst td{background:#fff6f0}
"""


@dataclass
class _Figure:
    name: str
    caption: str
    png: bytes


def write_report(
    run_dir: str | Path,
    predictions_dir: str | Path | None = None,
    epoch_metrics: str | Path | None = None,
    num_cases: int = 4,
) -> Path:
    """Write ``report.html``, ``report.md`` and ``report_files/`` into the run folder of an evaluation.

    Args:
        run_dir: the evaluation's output folder (holding ``metrics_per_image.csv``).
        predictions_dir: the folder of the masks (default ``<run_dir>/predictions``).
        epoch_metrics: the training's per-epoch metrics file (default ``<run_dir>/epoch_metrics.json``).
        num_cases: how many worst and best cases to show.

    Returns:
        The path of the HTML page.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``metrics_per_image.csv``.
    """
    folder = RunFolder(run_dir, predictions_dir)
    run_dir, table = folder.root, folder.metrics_csv
    if not table.is_file():
        raise FileNotFoundError(
            f"{table} not found: {run_dir} is not an evaluation folder. Run `segdino evaluate --output-dir "
            f"{run_dir}` (or the bundle's evaluating workflow) first."
        )
    names, rows = read_metrics_csv(table)
    summary_file = folder.summary_json
    context = json.loads(summary_file.read_text()).get("context", {}) if summary_file.is_file() else {}
    key = next((n for n in names if metric_label(n) == "Dice"), names[0] if names else "")
    epoch_metrics = Path(epoch_metrics) if epoch_metrics else folder.epoch_metrics
    figures, notes = _figures(names, rows, key, folder.predictions, epoch_metrics, num_cases)
    figures_by_name = {f.name: f for f in figures}
    sections = _sections(names, rows, key, context, figures, notes)

    files = folder.report_files
    shutil.rmtree(files, ignore_errors=True)  # figures of an earlier report may belong to other cases
    files.mkdir(parents=True)
    for figure in figures:
        atomic_write(files / f"{figure.name}.png", lambda tmp, png=figure.png: Path(tmp).write_bytes(png))
    page = _html(sections, figures_by_name, lambda f: "data:image/png;base64," + base64.b64encode(f.png).decode())
    markdown = _markdown(sections, figures_by_name, files.name)
    atomic_write(folder.report_html, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    atomic_write(folder.report_md, lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
    logger.info("Evaluation report: %s (markdown: %s)", folder.report_html, folder.report_md)
    return folder.report_html


def _figures(
    names: list[str], rows: list[EvaluatedImage], key: str, predictions_dir: Path, epoch_metrics: Path, num_cases: int
) -> tuple[list[_Figure], dict[str, list[str]]]:
    """The figures, and notes on what could not be shown by the section they belong to."""
    figures: list[_Figure] = []
    notes: dict[str, list[str]] = {"Training": [], "Notes": []}
    if rows:
        values = {n: [r.values[n] for r in rows] for n in names}
        figures.append(_Figure("distributions", "Distribution of the per-image metrics.", distributions_figure(values)))
        correlations = uncertainty_correlations(values)
        if correlations:
            caption = "Per-image uncertainty against Dice, with Spearman's rank correlation."
            figures.append(_Figure("uncertainty", caption, uncertainty_figure(correlations)))
    worst, best = rank_cases(rows, key, num_cases) if key else ([], [])
    output = output_names(row.filename for row in rows)  # the writer's names: one rule for both
    for kind, indices in (("worst", worst), ("best", best)):
        for rank, index in enumerate(indices, 1):
            row = rows[index]
            try:
                case = load_case(row.filename, predictions_dir, output[row.filename])
            except FileNotFoundError as err:
                notes["Notes"].append(str(err))
                continue
            scores = ", ".join(f"{metric_label(n)} {_fmt(row.values[n], n)}" for n in names)
            title = f"{kind} {rank}: {display_name(row.filename, output[row.filename])} ({scores})"
            figures.append(_Figure(f"{kind}_{rank}", title, case_figure(case, title)))
    try:
        curves = read_training_curves(epoch_metrics)
    except InputError as err:  # the evaluation's numbers do not depend on it: the page says so and goes on
        notes["Training"].append(str(err))
        curves = TrainingCurves()
    if curves:
        caption = "Training loss (mean per epoch) and the metrics logged per epoch during training."
        best_epoch = curves.best_epoch("val_mean_dice")
        if best_epoch:
            caption += f" Best validation Dice {best_epoch[1]:.4f} at epoch {best_epoch[0]} (the model evaluated here)."
        figures.append(_Figure("training_curves", caption, curves_figure(curves)))
    elif not notes["Training"]:
        notes["Training"].append(f"No training logs in {epoch_metrics}: the training curves are not shown.")
    return figures, notes


def _sections(
    names: list[str],
    rows: list[EvaluatedImage],
    key: str,
    context: dict,
    figures: list[_Figure],
    notes: dict[str, list[str]],
) -> list[tuple[str, list]]:
    """The page as (heading, blocks).

    A block is ``("p" | "warning" | "note", text)``, ``("table", header, rows, classes)`` or ``("figure", name)``.
    """
    labels = [metric_label(n) for n in names]
    overview: list = []
    if str(context.get("backbone weights", "")).lower() == "random":
        overview.append(
            (
                "warning",
                "This model ran on a RANDOMLY INITIALISED DINOv3 backbone (a demo or test run): its numbers say "
                "nothing about how a real model performs. Evaluate with the DINOv3 weights file for real results.",
            )
        )
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    items = [(str(k), str(v)) for k, v in context.items()] + [("images evaluated", str(len(rows)))]
    overview.append(("table", None, items + [("report written", generated)], ["context"]))
    stats = {n: summarise([r.values[n] for r in rows]) for n in names}
    if key and stats[key]["mean"] is not None:
        poor = sum(r.values[key] < POOR_OVERLAP for r in rows)
        overview.append(
            (
                "p",
                f"At a glance: on {len(rows)} images the mean {metric_label(key)} is {_fmt(stats[key]['mean'], key)} "
                f"(median {_fmt(stats[key]['median'], key)}); {poor} image(s) have a {metric_label(key)} below "
                f"{POOR_OVERLAP} (poor overlap): see the worst cases below.",
            )
        )
    summary_rows = [
        [label, *(_fmt(stats[n][s], n) for s in ("mean", "median", "std", "min", "max")), _count(stats[n])]
        for n, label in zip(names, labels, strict=True)
    ]
    summary = [
        ("table", ["metric", "mean", "median", "std", "min", "max", "images"], summary_rows, ["summary"]),
        *(("note", f"{label}: {text}") for label, text in HOW_TO_READ if label in labels),
        ("figure", "distributions"),
    ]
    correlations = uncertainty_correlations({n: [r.values[n] for r in rows] for n in names}) if rows else []
    uncertainty = [
        (
            "p",
            f"Spearman's correlation of {metric_label(c.uncertainty)} and {metric_label(c.dice)} over {c.n} images: "
            + (
                "n/a (too few images, or constant values)"
                if math.isnan(c.spearman)
                else f"{c.spearman:.3f} (p = {c.p_value:.3g})"
            )
            + ". Negative: the images the model is unsure of tend to be those it segments poorly, so the "
            "uncertainty points at the images to check.",
        )
        for c in correlations
    ]
    uncertainty += [("figure", "uncertainty")] if correlations else []
    cases = [name for name in (f.name for f in figures) if name.startswith(("worst", "best"))]
    worst = [("p", f"The {sum(c.startswith('worst') for c in cases)} images with the lowest {metric_label(key)}.")]
    worst += [("figure", c) for c in cases if c.startswith("worst")]
    best = [("figure", c) for c in cases if c.startswith("best")]
    ranked = sorted(range(len(rows)), key=lambda i: (math.isnan(rows[i].values[key]), rows[i].values[key], i))
    output = output_names(row.filename for row in rows)
    shown = {row.filename: display_name(row.filename, output[row.filename]) for row in rows}  # distinct, unlike .name
    table_rows = [
        [str(rank), rows[i].filename, *(_fmt(rows[i].values[n], n) for n in names)] for rank, i in enumerate(ranked, 1)
    ]
    table_rows = [[row[0], (shown[row[1]], row[1]), *row[2:]] for row in table_rows]
    every = [
        (
            "p",
            f"One row per evaluated image, lowest {metric_label(key)} first "
            f"(values of {RunFolder('.').metrics_csv.name}).",
        ),
        ("table", ["rank", "image", *labels], table_rows, ["per-image"]),
    ]
    training = [("figure", "training_curves")] if any(f.name == "training_curves" for f in figures) else []
    sections = [
        ("Overview", overview),
        ("Summary", summary),
        *([("Uncertainty and Dice", uncertainty)] if uncertainty else []),
        ("Where the model fails: the worst cases", worst),
        ("The best cases", best),
        ("Training", training + [("note", n) for n in notes["Training"]]),
        ("Every image", every),
    ]
    if notes["Notes"]:
        sections.append(("Notes", [("note", n) for n in notes["Notes"]]))
    return sections


def _html(sections: list[tuple[str, list]], figures: dict[str, _Figure], source) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Segmentation report</title><style>{CSS}</style></head><body>",
        "<h1>Segmentation report</h1>",
    ]
    for heading, blocks in sections:
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            kind = block[0]
            if kind in ("p", "warning", "note"):
                css = "" if kind == "p" else f' class="{kind}"'
                out.append(f"<p{css}>{html.escape(block[1])}</p>")
            elif kind == "table":
                out.append(_html_table(*block[1:]))
            elif kind == "figure" and block[1] in figures:
                figure = figures[block[1]]
                alt = html.escape(figure.caption, quote=True)
                out.append(
                    f'<figure id="{figure.name}"><img src="{source(figure)}" alt="{alt}">'
                    f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
                )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_table(
    header: Sequence[str] | None, rows: Sequence[Sequence[str | tuple[str, str]]], classes: Sequence[str]
) -> str:
    css = f' class="{" ".join(classes)}"' if classes else ""
    head = "".join(f"<th{' class=name' if i < 2 else ''}>{html.escape(h)}</th>" for i, h in enumerate(header or []))
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text, full = cell if isinstance(cell, tuple) else (cell, None)  # (shown name, full path) of an image
            shown = html.escape(text)
            title = f' title="{html.escape(full, quote=True)}"' if full else ""
            cells.append(f"<td{' class=name' if i < 2 else ''}{title}>{shown}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table{css}>{head}<tbody>{''.join(body)}</tbody></table>"


def _markdown(sections: list[tuple[str, list]], figures: dict[str, _Figure], files_dir: str) -> str:
    out = ["# Segmentation report", ""]
    for heading, blocks in sections:
        out += [f"## {heading}", ""]
        for block in blocks:
            kind = block[0]
            if kind == "p":
                out += [block[1], ""]
            elif kind in ("warning", "note"):
                out += [f"> {'**Warning:** ' if kind == 'warning' else ''}{block[1]}", ""]
            elif kind == "table":
                header, rows = block[1] or [" "] * len(block[2][0]), block[2]
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                for row in rows:
                    cells = [c[0] if isinstance(c, tuple) else c for c in row]
                    out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
                out.append("")
            elif kind == "figure" and block[1] in figures:
                figure = figures[block[1]]
                out += [f"![{figure.caption}]({files_dir}/{figure.name}.png)", "", f"*{figure.caption}*", ""]
    return "\n".join(out)


def _fmt(value: float | None, name: str) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if "HD95" in metric_label(name) else f"{value:.4f}"


def _count(stats: dict) -> str:
    excluded = stats["n_excluded"]
    return f"{stats['n']}" + (f" ({excluded} n/a)" if excluded else "")
