"""The report as one HTML file that needs nothing else: its style inline, its pictures as
``data:`` URIs, and a Content-Security-Policy that forbids every other source, so that a
reader's browser fetches nothing and the file can be mailed, archived or opened offline.

Every piece of text from a run (class names, file names, the config) is escaped here.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from segkit.report.confusion import Confusion

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
SECTIONS = (
    ("summary", "Summary"),
    ("curves", "Learning curves"),
    ("classes", "Per-class metrics"),
    ("confusion", "Confusion"),
    ("worst", "Worst images"),
    ("config", "Config"),
    ("environment", "Environment"),
)
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
header { background: #1d2a3a; color: #fff; padding: 18px 32px 12px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0 0 10px; color: #c7d2e0; }
nav a { color: #9fd0ff; margin-right: 16px; text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 8px; margin: 18px 0;
  padding: 8px 20px 16px; }
h2 { font-size: 18px; margin: 10px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #dde2e8; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 22px; }
.card span { color: #5b6776; font-size: 13px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eceff3; text-align: right; }
th { background: #f0f3f7; }
td:first-child, th:first-child, table.facts td, table.pairs td:nth-child(2),
table.pairs th:nth-child(2) { text-align: left; }
td.bar { background: linear-gradient(90deg, #cfe3f7 calc(var(--v) * 100%), transparent 0); }
td.low { color: #b42318; font-weight: 600; }
img.plot { max-width: 100%; height: auto; }
.worst-image { margin: 14px 0; }
.worst-image > p { margin: 4px 0; }
.panels { display: flex; flex-wrap: wrap; gap: 10px; }
.panels figure { margin: 0; text-align: center; font-size: 13px; color: #5b6776; }
.panels img { image-rendering: pixelated; border: 1px solid #dde2e8; }
.legend i { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px;
  vertical-align: -1px; border: 1px solid #888; }
pre { background: #f0f3f7; padding: 10px; overflow: auto; font-size: 13px; max-height: 520px; }
.notes li { color: #7a4b00; }
"""


@dataclass
class WorstImage:
    name: str
    iou: float
    focus: str  # the image's class with the most wrong pixels, whose errors the panel colours
    focus_iou: float
    lowest: str  # the image's class of the lowest IoU, which pulls the image's IoU down most
    lowest_iou: float
    pictures: dict[str, bytes]  # PNG by panel name


@dataclass
class ReportContent:
    run: str
    checkpoint: str
    step: int | None
    made: str  # when the report was made
    classes: list[str]
    metrics: dict[str, Any]  # segkit eval's keys: mIoU, IoU by class, ...
    metrics_source: str
    settings: str  # the inference settings of the pass, in words
    images: int
    curves: bytes | None  # SVG
    heatmap: bytes | None  # SVG
    pixels: list[float] | None  # each class's share of the labelled pixels
    confusions: list[Confusion]
    confusion_source: str
    worst: list[WorstImage]
    config: str
    environments: list[tuple[str, dict[str, Any]]]  # (whose, env.json-like facts)
    notes: list[str] = field(default_factory=list)


def render(content: ReportContent) -> str:
    sections = [
        _summary(content),
        _curves(content),
        _classes(content),
        _confusion(content),
        _worst(content),
        _section("config", f"<pre>{_e(content.config)}</pre>"),
        _environment(content),
    ]
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>segkit report: {_e(content.run)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<header><h1>segkit report</h1><p>run {_e(content.run)} &middot; checkpoint "
        f"{_e(content.checkpoint)}{_step(content.step)} &middot; made {_e(content.made)}</p>"
        f"<nav>{nav}</nav></header>\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def _e(text: Any) -> str:
    """Escaped for HTML text and attribute values; bytes of a file name that were not UTF-8
    (lone surrogates) shown as escapes rather than failing the write."""
    escaped = html.escape(str(text), quote=True)
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def _section(key: str, body: str) -> str:
    title = dict(SECTIONS)[key]
    return f'<section id="{key}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _step(step: int | None) -> str:
    return "" if step is None else f" (iteration {step})"


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) and value == value else "&ndash;"


def _interval(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{_percent(value[0])}&ndash;{_percent(value[1])}"
    return "&ndash;"


def _data_uri(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _image(kind: str, data: bytes, alt: str, css: str = "", width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img class="{css}" src="{_data_uri(kind, data)}" alt="{_e(alt)}"{size}>'


def _ci(metrics: dict[str, Any]) -> dict[str, Any]:
    ci = metrics.get("ci")
    return ci if isinstance(ci, dict) else {}


def _ci_label(ci: dict[str, Any]) -> str:
    level = ci.get("level")
    return f"{100 * level:g}% interval" if isinstance(level, (int, float)) else "interval"


def _summary(content: ReportContent) -> str:
    metrics, ci = content.metrics, _ci(content.metrics)
    cards = []
    for key in ("mIoU", "mAcc", "aAcc", "fwIoU"):
        if key not in metrics:
            continue
        extra = ""
        if key == "mIoU" and "mIoU" in ci:
            extra = f"<span>{_e(_ci_label(ci))} {_interval(ci['mIoU'])}</span>"
        cards.append(
            f'<div class="card"><span>{key}</span><b>{_percent(metrics[key])}</b>{extra}</div>'
        )
    cards.append(f'<div class="card"><span>images</span><b>{content.images}</b></div>')
    facts = [
        ("metrics", content.metrics_source),
        ("inference", content.settings),
    ]
    if ci:
        facts.append(("intervals", _ci_facts(ci)))
    body = f'<div class="cards">{"".join(cards)}</div>\n' + _key_values(facts)
    if content.notes:
        body += (
            '\n<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in content.notes) + "</ul>"
        )
    return _section("summary", body)


def _ci_facts(ci: dict[str, Any]) -> str:
    parts = [_ci_label(ci) + " by bootstrap"]
    if "resamples" in ci:
        parts.append(f"{ci['resamples']} resamples")
    if "seed" in ci:
        parts.append(f"seed {ci['seed']}")
    return ", ".join(str(p) for p in parts)


def _key_values(rows: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def _curves(content: ReportContent) -> str:
    if content.curves is None:
        return _section("curves", "<p>metrics.jsonl holds no losses, rates or scores to draw.</p>")
    picture = _image("image/svg+xml", content.curves, "learning curves", "plot")
    return _section("curves", picture)


PER_CLASS = (("Dice", "Dice"), ("Precision", "precision"), ("Recall", "recall"))


def _classes(content: ReportContent) -> str:
    metrics, ci = content.metrics, _ci(content.metrics)
    iou, accuracy = metrics.get("IoU", {}), metrics.get("Acc") or {}
    intervals = ci.get("IoU") if isinstance(ci.get("IoU"), dict) else None
    extra = [(key, title) for key, title in PER_CLASS if isinstance(metrics.get(key), dict)]
    header = ["class"]
    if content.pixels is not None:
        header.append("pixels %")
    header.append("IoU")
    if intervals is not None:
        header.append(f"IoU {_ci_label(ci)}")
    header += ["accuracy", *(title for _, title in extra)]
    mean = metrics.get("mIoU")
    rows = []
    for index, name in enumerate(content.classes):
        value = iou.get(name)
        low = isinstance(value, float) and isinstance(mean, float) and value < 0.5 * mean
        cells = [f"<td>{_e(name)}</td>"]
        if content.pixels is not None:
            cells.append(f"<td>{_percent(content.pixels[index])}</td>")
        cells.append(_bar_cell(value, "low" if low else ""))
        if intervals is not None:
            cells.append(f"<td>{_interval(intervals.get(name))}</td>")
        cells.append(_bar_cell(accuracy.get(name)))
        cells += [_bar_cell(metrics[key].get(name)) for key, _ in extra]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    note = (
        "<p>Per cent. A class in neither the ground truth nor the predictions has no IoU "
        "(&ndash;); IoU in red is under half the mIoU.</p>"
    )
    return _section("classes", note + table)


def _bar_cell(value: Any, css: str = "") -> str:
    if not isinstance(value, (int, float)):
        return "<td>&ndash;</td>"
    share = min(max(float(value), 0.0), 1.0)
    return f'<td class="bar {css}" style="--v: {share:.4f}">{_percent(value)}</td>'


def _confusion(content: ReportContent) -> str:
    if content.heatmap is None:
        return _section("confusion", "<p>No confusion matrix.</p>")
    picture = _image("image/svg+xml", content.heatmap, "row-normalised confusion matrix", "plot")
    rows = "".join(
        f"<tr><td>{_e(c.truth)}</td><td>{_e(c.predicted)}</td><td>{c.pixels:,}</td>"
        f"<td>{_percent(c.share_of_truth)}</td><td>{_percent(c.share_of_all)}</td></tr>"
        for c in content.confusions
    )
    header = (
        "<tr><th>ground truth</th><th>predicted as</th><th>pixels</th>"
        "<th>% of the class</th><th>% of all pixels</th></tr>"
    )
    pairs = (
        f'<table class="pairs"><thead>{header}</thead><tbody>{rows}</tbody></table>'
        if content.confusions
        else "<p>No pixel was predicted as another class.</p>"
    )
    body = (
        f"<p>Rows are the ground truth, each divided by its class's labelled pixels "
        f"({_e(content.confusion_source)}).</p>\n{picture}\n<h3>Most confused pairs</h3>\n{pairs}"
    )
    return _section("confusion", body)


LEGEND = (
    ("rgb(235, 50, 50)", "missed: that class predicted as another (its false negatives)"),
    ("rgb(40, 130, 255)", "invented: another class predicted as that class (its false positives)"),
    ("rgb(250, 190, 30)", "other mistakes"),
)


def _worst(content: ReportContent) -> str:
    if not content.worst:
        return _section("worst", "<p>No images were asked for (--worst 0).</p>")
    legend = "".join(f'<i style="background: {colour}"></i>{_e(text)}' for colour, text in LEGEND)
    items = []
    for rank, image in enumerate(content.worst, 1):
        figures = "".join(
            f"<figure>{_image('image/png', data, f'{image.name}: {panel}')}"
            f"<figcaption>{_e(panel)}</figcaption></figure>"
            for panel, data in image.pictures.items()
        )
        items.append(
            f'<div class="worst-image"><p><b>{rank}. {_e(image.name)}</b> &middot; image IoU '
            f"{_percent(image.iou)} &middot; most errors: {_e(image.focus)} (IoU "
            f"{_percent(image.focus_iou)}) &middot; lowest IoU: {_e(image.lowest)} "
            f'({_percent(image.lowest_iou)})</p><div class="panels">{figures}</div></div>'
        )
    body = (
        "<p>The validation images with the lowest IoU (the mean over the classes in the image's "
        "ground truth or prediction), predicted as segkit eval predicts them.</p>"
        f'<p class="legend">Errors panel, for the class with the most wrong pixels:{legend}</p>'
        + "".join(items)
    )
    return _section("worst", body)


ENVIRONMENT_KEYS = (
    "segkit",
    "torch",
    "torchvision",
    "python",
    "numpy",
    "platform",
    "device",
    "device_name",
    "precision",
    "world_size",
    "started",
)


def _environment(content: ReportContent) -> str:
    columns: Sequence[tuple[str, dict[str, Any]]] = content.environments
    header = "<th></th>" + "".join(f"<th>{_e(whose)}</th>" for whose, _ in columns)
    rows = []
    for key in ENVIRONMENT_KEYS:
        if any(key in facts for _, facts in columns):
            cells = "".join(f"<td>{_e(facts.get(key, '-'))}</td>" for _, facts in columns)
            rows.append(f"<tr><td>{_e(key)}</td>{cells}</tr>")
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    plugins = _plugins(columns[0][1]) if columns else ""
    return _section("environment", table + plugins)


def _plugins(facts: dict[str, Any]) -> str:
    listed = facts.get("plugins")
    if not isinstance(listed, list):
        return ""
    names = [
        f"{p.get('name')} ({p.get('distribution')} {p.get('version')})"
        for p in listed
        if isinstance(p, dict)
    ]
    return f"<p>Plugins: {_e(', '.join(names))}</p>" if names else ""
