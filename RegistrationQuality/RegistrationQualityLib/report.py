"""The QA report folder: ``report.json``, ``metrics.csv``, ``report.html`` and ``snapshots/``.

:func:`write_report` takes the report dict built by ``evaluate`` (schema: docs/report.md) and writes the folder
atomically: everything goes into a hidden sibling ``.<name>.tmp-XXXXXXXX`` that replaces the target by a rename,
so a killed run never leaves a folder that looks complete, and a previous report stays intact until the new one is
whole. :func:`render_html` makes one self-contained page (plain HTML + CSS + inline SVG, images as data URIs, no
scripts, no external resources) that a clinician can read at a glance. :func:`metrics_rows` flattens the numbers
into long-format rows (one per metric and stage) for ``metrics.csv`` and cohort summaries; :func:`summary_html`
writes the cohort summary page.

Colours are the Okabe & Ito colour-blind-safe palette (Okabe M, Ito K. "Color Universal Design", 2002;
https://jfly.uni-koeln.de/color/); meaning is never carried by colour alone (symbols and words go with it).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from .errors import BadInputError

REPORT_JSON = "report.json"
METRICS_CSV = "metrics.csv"
REPORT_HTML = "report.html"
SNAPSHOT_DIR = "snapshots"
METRICS_COLUMNS = ("section", "subject", "metric", "stage", "value", "unit", "note")
TOOL_NAME = "RegistrationQuality"

# Okabe-Ito palette
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"  # bluish green: pass, improvement
YELLOW = "#F0E442"
BLUE = "#0072B2"  # "after"
VERMILLION = "#D55E00"  # fail, worse, folding
PURPLE = "#CC79A7"
GREY = "#6E6E6E"  # "no checks", "before" (not an Okabe-Ito colour; neutral)
LIGHT_GREY = "#B8B8B8"

VERDICT_COLOURS = {"pass": GREEN, "fail": VERMILLION, "no checks": GREY}

# Segment metrics shown in the table: key, column title, unit, True if larger is better.
# (Jaccard = Dice / (2 - Dice) adds nothing at a glance; it is in report.json and metrics.csv.)
SEGMENT_COLUMNS = (
    ("dice", "Dice", "", True),
    ("hausdorff_percentile_mm", "HD{p}", "mm", False),
    ("hausdorff_mm", "Hausdorff max", "mm", False),
    ("mean_surface_distance_mm", "Mean surface dist.", "mm", False),
)
SIMILARITY_METRICS = (  # key, title, higher is better, unit for formatting ("" = 3 decimals, None = free)
    ("ncc", "Normalised cross-correlation", True, ""),
    ("nmi", "Normalised mutual information", True, ""),
    ("mse", "Mean squared error", False, None),
    ("mae", "Mean absolute error", False, None),
)
CHECK_NAMES = {
    "min_dice": ("Dice", "", "≥"),
    "max_hausdorff": ("Hausdorff distance", "mm", "≤"),
    "max_tre": ("Landmark TRE", "mm", "≤"),
    "max_folding": ("Folding (J ≤ 0)", "%", "≤"),
}
# How many landmarks the TRE bar chart shows (worst first); the table in report.json has all of them.
MAX_CHART_LANDMARKS = 60
IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".svg": "image/svg+xml", ".webp": "image/webp"}


# ---------------------------------------------------------------------------------------------------------------
# Writing the folder


def write_report(report: Mapping, output_dir, snapshot_files: Mapping | None = None) -> Path:
    """Write the report folder ``output_dir`` atomically and return its path.

    ``snapshot_files`` maps a snapshot's relative path as listed in ``report["snapshots"][i]["file"]``
    (``"snapshots/axial.png"``; a bare ``"axial.png"`` means the same) to the image file to copy there.
    Snapshots listed in the report but not given are dropped from the written report with a warning; files given
    but not listed are added with their file name as title; keys starting with "_" are ignored. The input dict is
    not modified.

    The folder is first written completely into a hidden sibling ``.<name>.tmp-XXXXXXXX``; then a previous report
    folder at ``output_dir`` is renamed aside, the new one renamed into place and the old one deleted. A
    temporary is removed in ``finally`` whatever happens. ``output_dir`` may be absent, an empty folder or a
    previous report folder (it has a RegistrationQuality ``report.json``; the whole folder is replaced);
    anything else raises :class:`BadInputError` naming ``--output``.
    """
    target = Path(os.path.abspath(os.fspath(output_dir)))
    _check_output_target(target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInputError("--output", f"cannot create folder {parent}: {err.strerror or err}") from None
    sources = _snapshot_sources(snapshot_files)
    report = _jsonable(report)
    if not isinstance(report.get("tool"), dict):
        report["tool"] = {}
    report["tool"].setdefault("name", TOOL_NAME)  # marks the folder as a report that a re-run may replace
    warnings = list(report.get("warnings") or [])
    snapshots = []
    for entry in report.get("snapshots") or []:
        rel = _snapshot_relpath(entry.get("file", ""))
        if rel in sources:
            snapshots.append(dict(entry, file=rel))
        else:
            warnings.append(f"snapshot {entry.get('file')!r} was not produced; it is left out of the report")
    listed = {s["file"] for s in snapshots}
    for rel in sources:
        if rel not in listed:
            snapshots.append({"file": rel, "title": Path(rel).stem.replace("_", " "), "caption": ""})
    report["snapshots"] = snapshots
    report["warnings"] = warnings

    temporary = _new_sibling(target, "tmp", create=True)
    aside = None
    try:
        if sources:
            (temporary / SNAPSHOT_DIR).mkdir()
        for rel, source in sources.items():
            shutil.copyfile(source, temporary / rel)
        embedded = {rel: temporary / rel for rel in sources}
        _write_metrics_csv(metrics_rows(report), temporary / METRICS_CSV)
        (temporary / REPORT_HTML).write_text(render_html(report, embedded), encoding="utf-8")
        # report.json last: a folder holding it is complete
        text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
        (temporary / REPORT_JSON).write_text(text + "\n", encoding="utf-8")
        if target.exists():
            aside = _new_sibling(target, "old", create=False)
            os.rename(target, aside)
        try:
            os.rename(temporary, target)
        except BaseException:
            if aside is not None:
                os.rename(aside, target)
                aside = None
            raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
        if aside is not None and os.path.lexists(aside):
            if aside.is_symlink():  # output_dir was a link to a report folder: drop the link only
                aside.unlink()
            else:
                shutil.rmtree(aside, ignore_errors=True)
    return target


def _check_output_target(target: Path) -> None:
    if not target.name or target.parent == target:
        raise BadInputError("--output", f"'{target}' cannot be a report folder; give a folder name")
    if not os.path.lexists(target):
        ancestor = target.parent
        while not os.path.lexists(ancestor) and ancestor.parent != ancestor:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise BadInputError("--output", f"{ancestor} is a file; the report folder {target} cannot be created "
                                "under it")
        return
    if not target.is_dir():
        raise BadInputError("--output", f"{target} is an existing file, not a folder")
    try:
        entries = list(target.iterdir())
    except OSError as err:
        raise BadInputError("--output", f"cannot read folder {target}: {err.strerror or err}") from None
    if entries and not _is_report_folder(target):
        raise BadInputError("--output", f"{target} exists and is not a report folder (no {TOOL_NAME} "
                            f"{REPORT_JSON}); give a new or empty folder")


def _is_report_folder(folder: Path) -> bool:
    try:
        with open(folder / REPORT_JSON, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("tool"), dict) and data["tool"].get("name") == TOOL_NAME


def _new_sibling(target: Path, kind: str, create: bool) -> Path:
    """A hidden sibling ``.<name>.<kind>-XXXXXXXX`` (created with the process umask when ``create``)."""
    for _ in range(100):
        candidate = target.parent / f".{target.name}.{kind}-{secrets.token_hex(4)}"
        if os.path.lexists(candidate):
            continue
        if create:
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise BadInputError("--output", f"cannot write in {target.parent}: {err.strerror or err}") from None
        return candidate
    raise BadInputError("--output", f"cannot create a temporary folder next to {target}")


def _snapshot_relpath(name) -> str:
    text = os.fspath(name).replace("\\", "/")
    if text.startswith(SNAPSHOT_DIR + "/"):
        text = text[len(SNAPSHOT_DIR) + 1:]
    if not text or "/" in text or text in (".", ".."):
        raise BadInputError("snapshot", f"'{name}' is not a plain file name inside {SNAPSHOT_DIR}/")
    return f"{SNAPSHOT_DIR}/{text}"


def _snapshot_sources(snapshot_files) -> dict:
    sources = {}
    for name, path in (snapshot_files or {}).items():
        if str(name).startswith("_"):  # the caller's bookkeeping (e.g. "_tempdir"), not a snapshot
            continue
        rel = _snapshot_relpath(name)
        source = Path(path)
        if not source.is_file():
            raise BadInputError(source, "snapshot image not found")
        sources[rel] = source
    return sources


def _write_metrics_csv(rows, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in METRICS_COLUMNS})


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping text
    return value


def _jsonable(value):
    """Plain JSON types: numpy scalars/arrays to Python, paths to text, NaN/inf to None (null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if tolist is not None:
        return _jsonable(tolist())
    raise TypeError(f"report value of type {type(value).__name__} is not JSON: {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# metrics.csv


def _unit(key: str) -> str:
    for suffix, unit in (("_mm", "mm"), ("_cc", "cc"), ("_percent", "%"), ("_s", "s")):
        if key.endswith(suffix):
            return unit
    return ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten(values: Mapping, prefix: str = ""):
    """(dotted key, value) for numbers and nulls of a nested dict; text and lists are skipped."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        elif value is None or _is_number(value):
            yield name, value


def metrics_rows(report: Mapping) -> list[dict]:
    """Long-format rows, one per metric and stage, for ``metrics.csv`` and cohort summaries.

    Columns: ``section`` (segments, landmarks, deformation, similarity, elastix, checks), ``subject`` (segment
    name, landmark label, "all landmarks", the region), ``metric`` (the report.json key; nested keys dotted,
    e.g. ``directed.reference_to_compared.max_mm``), ``stage`` (before / after / -), ``value`` (number or None
    when it could not be computed), ``unit`` (mm, cc, %, s or empty) and ``note`` (the reason for a None, or a
    check's outcome).
    """
    rows: list[dict] = []

    def add(section, subject, metric, stage, value, unit=None, note=""):
        rows.append({"section": section, "subject": "" if subject is None else str(subject), "metric": metric,
                     "stage": stage, "value": value, "unit": _unit(metric) if unit is None else unit,
                     "note": note or ""})

    for segment in report.get("segments") or []:
        subject = segment.get("name", segment.get("label"))
        for stage in ("before", "after"):
            values = segment.get(stage)
            if not isinstance(values, Mapping):
                continue
            status = values.get("status")
            reason = "" if status in (None, "ok") else str(status)
            for key, value in _flatten(values):
                add("segments", subject, key, stage, value, note=reason if value is None else "")

    landmarks = report.get("landmarks")
    if isinstance(landmarks, Mapping):
        for point in landmarks.get("points") or []:
            note = "outside the transform's domain" if point.get("outside_domain") else ""
            for stage in ("before", "after"):
                add("landmarks", point.get("label"), "tre_mm", stage, point.get(f"{stage}_mm"), "mm", note)
        for stage in ("before", "after"):
            summary = landmarks.get(stage)
            if isinstance(summary, Mapping):
                for key, value in _flatten(summary):
                    add("landmarks", "all landmarks", f"tre_{key}", stage, value, "" if key == "count" else None)

    deformation = report.get("deformation")
    if isinstance(deformation, Mapping):
        jacobian = deformation.get("jacobian") or {}
        region = jacobian.get("region") or ""
        for key, value in _flatten(jacobian):
            unit = "%" if key == "folding_percent" else ("" if key == "sdlogj_excluded_voxels" else None)
            add("deformation", region, f"jacobian_{key}", "-", value, unit)
        for key, value in _flatten(deformation.get("displacement_mm") or {}):
            add("deformation", region, f"displacement_{key}_mm", "-", value, "mm")

    similarity = report.get("similarity")
    if isinstance(similarity, Mapping):
        for stage in ("before", "after"):
            for key, value in _flatten(similarity.get(stage) or {}):
                add("similarity", similarity.get("region") or "", key, stage, value, "")

    elastix = report.get("elastix")
    if isinstance(elastix, Mapping):
        for i, value in enumerate(elastix.get("final_metric_values") or []):
            add("elastix", f"resolution {i}", "final_metric_value", "-", value, "", elastix.get("metric") or "")
        if elastix.get("run_time_s") is not None:
            add("elastix", "", "run_time_s", "-", elastix.get("run_time_s"), "s")

    for check in report.get("checks") or []:
        name = check.get("name", "")
        unit = CHECK_NAMES.get(name, ("", "", ""))[1]
        outcome = "passed" if check.get("passed") else "failed"
        note = f"{outcome}: limit {check.get('comparison', '')} {_plain(check.get('limit'))}".replace("  ", " ")
        add("checks", check.get("subject") or "", name, "-", check.get("value"), unit, note)
    return rows


def _plain(value) -> str:
    return "" if value is None else (f"{value:g}" if _is_number(value) else str(value))


# ---------------------------------------------------------------------------------------------------------------
# HTML helpers

CSS = """
:root { --pass: #009E73; --fail: #D55E00; --none: #6E6E6E; --before: #8C8C8C; --after: #0072B2;
        --ink: #1b1b1b; --muted: #555; --rule: #d6d6d6; --zebra: #f5f6f7; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--ink); background: #fff; font: 16px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "Noto Sans", "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 26px; margin: 0 0 2px; }
h2 { font-size: 20px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--rule); }
h3 { font-size: 16px; margin: 16px 0 6px; }
.sub { color: var(--muted); font-size: 14px; margin: 0 0 14px; }
.banner { display: flex; align-items: center; gap: 22px; padding: 16px 22px; border-radius: 8px; color: #fff; }
.banner .word { font-size: 34px; font-weight: 800; letter-spacing: 0.06em; white-space: nowrap; }
.banner .what { font-size: 18px; font-weight: 600; }
.banner.pass { background: var(--pass); } .banner.fail { background: var(--fail); }
.banner.none { background: var(--none); }
.failing { margin: 0; padding: 10px 22px 12px 40px; background: #fbeee5; border: 2px solid var(--fail);
           border-top: 0; border-radius: 0 0 8px 8px; }
.failing li { margin: 2px 0; }
.banner.has-list { border-radius: 8px 8px 0 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 4px; }
.tile { flex: 1 1 200px; border: 1px solid var(--rule); border-radius: 8px; padding: 10px 14px; }
.tile .k { font-size: 13px; color: var(--muted); }
.tile .v { font-size: 24px; font-weight: 700; font-variant-numeric: tabular-nums; }
.tile .d { font-size: 14px; color: var(--muted); }
nav { margin: 14px 0 0; font-size: 14px; }
nav a { margin-right: 14px; color: var(--after); }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 15px; }
.scroll { max-width: 100%; overflow-x: auto; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
th { background: #eef0f2; font-weight: 600; }
tbody tr:nth-child(even) td { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.better { color: #00684c; font-weight: 700; } .worse { color: #a84a00; font-weight: 700; }
.same { color: var(--muted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 13px;
         font-weight: 700; white-space: nowrap; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.badge.none { background: var(--none); }
.null { color: var(--muted); }
.reason { color: #8a3c00; font-size: 14px; }
.path { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px;
        word-break: break-all; }
.snaps { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 18px 22px; }
figure { margin: 0; min-width: 0; }
figure.lead { grid-column: 1 / -1; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--rule); background: #000; image-rendering: auto; }
figcaption { font-size: 14px; color: var(--muted); }
figcaption b { color: var(--ink); }
.missing { padding: 30px; border: 2px dashed var(--rule); color: var(--muted); text-align: center; }
.legend { font-size: 14px; color: var(--muted); }
.key { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 10px; vertical-align: -1px;
       border-radius: 2px; }
svg { max-width: 100%; height: auto; font-family: inherit; }
svg text { fill: #1b1b1b; }
.warnings li { margin: 3px 0; }
dl.defs dt { font-weight: 700; margin-top: 8px; }
dl.defs dd { margin: 2px 0 0 18px; }
.two { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.two > div:first-child { flex: 0 0 auto; } .two > div + div { flex: 1 1 480px; min-width: 0; }
svg.chart { width: 100%; max-width: 900px; height: auto; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 10px 36px; }
.cases td:first-child { white-space: nowrap; } .cases td:nth-child(2) { min-width: 190px; }
.cases table { font-size: 14px; } .cases th, .cases td { padding: 4px 7px; }
.cases th.num { white-space: normal; }
footer { margin-top: 30px; font-size: 13px; color: var(--muted); }
@media print {
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section, figure, table, svg { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  .scroll { overflow: visible; }
}
"""


def _e(value) -> str:
    """Escaped text of any value (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _fmt(value, unit: str = "", digits: int | None = None) -> str:
    """Escaped display text of a number (None -> an em dash)."""
    if value is None:
        return '<span class="null">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _is_number(value):
        return _e(value)
    if isinstance(value, int):
        text = f"{value:d}"
    elif digits is not None and 0 < abs(value) < 0.5 * 10.0**-digits:
        text = f"{'-' if value < 0 else ''}<{10.0**-digits:.{digits}f}"  # never a non-zero shown as 0
    elif digits is not None:
        text = f"{value:.{digits}f}"
    elif value != 0 and (abs(value) >= 1e7 or abs(value) < 1e-3):
        text = f"{value:.3g}"
    elif abs(value) >= 1000:
        text = f"{value:.0f}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        text = "0" if text in ("", "-0") else text
    return _e(text) + (f" {_e(unit)}" if unit else "")


def _digits(unit: str | None) -> int | None:
    """Decimals shown for a unit: mm 2, cc / % / ratios 3; None = free format."""
    return {"mm": 2, "cc": 3, "%": 3, "": 3}.get(unit) if unit is not None else None


def _change(before, after, higher_is_better: bool, unit: str | None = "") -> str:
    """``before → after`` with an arrow and colour saying whether it improved (``unit`` None: free format, the
    same decimals on both sides)."""
    digits = _digits(unit)
    if unit is None:
        size = max([abs(v) for v in (before, after) if _is_number(v)] + [0.0])
        digits = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 10 else 3
    b, a = _fmt(before, "", digits), _fmt(after, "", digits)
    if not (_is_number(before) and _is_number(after)):
        return f"{b} → {a}"
    tolerance = 1e-9 * max(1.0, abs(before), abs(after))
    if abs(after - before) <= tolerance:
        return f'{b} → {a} <span class="same" title="unchanged">=</span>'
    improved = (after > before) == higher_is_better
    arrow = "▲" if after > before else "▼"
    cls, word = ("better", "improved") if improved else ("worse", "worse")
    return f'{b} → <span class="{cls}" title="{word}">{a} {arrow}</span>'


def _table(header, rows, numeric=()) -> str:
    """A table from pre-escaped cell HTML (``header`` None: no header row). ``numeric``: right-aligned columns."""
    out = ['<div class="scroll"><table>']
    if header:
        out.append("<thead><tr>")
        for i, title in enumerate(header):
            out.append(f'<th class="num">{title}</th>' if i in numeric else f"<th>{title}</th>")
        out.append("</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            out.append(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 × 10^k steps, about ``count`` intervals, least
    overshoot)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    candidates = [m * power for m in (0.5, 1, 2, 2.5, 5, 10, 20)]

    def cost(step):
        first = math.floor(lo / step + 1e-9) * step
        last = math.ceil(hi / step - 1e-9) * step
        intervals = round((last - first) / step)
        return (not count // 2 <= intervals <= 2 * count, (last - first) / (hi - lo) + 0.05 * abs(intervals - count))

    step = min(candidates, key=cost)
    first = math.floor(lo / step + 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-6 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi - 1e-9:
        ticks.append(round(value, 12))
    return ticks


def _tick_text(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.0e}"


def _data_uri(source) -> str | None:
    if isinstance(source, (bytes, bytearray)):
        data, mime = bytes(source), "image/png"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        suffix = path.suffix.lower()
        mime = IMAGE_MIME.get(suffix, "image/png")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------------------------
# Charts (inline SVG)


def tre_chart_svg(points, limit=None, width: int = 760) -> str:
    """Horizontal grouped bars, before (grey) and after (blue) TRE per landmark, worst after first."""
    points = [p for p in points if _is_number(p.get("before_mm")) or _is_number(p.get("after_mm"))]
    if not points:
        return ""

    def badness(p):
        a, b = p.get("after_mm"), p.get("before_mm")
        return (-(a if _is_number(a) else -1.0), -(b if _is_number(b) else -1.0), str(p.get("label")))

    points = sorted(points, key=badness)
    shown = points[:MAX_CHART_LANDMARKS]
    values = [v for p in shown for v in (p.get("before_mm"), p.get("after_mm")) if _is_number(v)]
    top = max(values + ([limit] if _is_number(limit) else []) + [1e-9])
    ticks = _nice_ticks(0.0, top)
    x_max = ticks[-1]
    longest = max(min(len(str(p.get("label"))), 28) for p in shown)
    label_w, left_pad, right_pad, top_pad = int(min(220, max(60, 7.6 * longest + 14))), 8, 44, 30
    row_h, bar_h = (30, 11) if len(shown) <= 20 else (22, 8)
    plot_w = width - label_w - left_pad - right_pad
    height = top_pad + row_h * len(shown) + 34

    def x(v):
        return label_w + left_pad + plot_w * (v / x_max)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>Target registration error per landmark, before and after '
           f'registration, worst first</title>']
    bottom = top_pad + row_h * len(shown)
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{top_pad - 6}" x2="{x(t):.1f}" y2="{bottom}" stroke="#e3e3e3"/>'
                   f'<text x="{x(t):.1f}" y="{bottom + 16}" font-size="12" text-anchor="middle">{_tick_text(t)}'
                   f'</text>')
    out.append(f'<text x="{label_w + left_pad + plot_w / 2:.1f}" y="{bottom + 31}" font-size="12" '
               f'text-anchor="middle">TRE (mm)</text>')
    for i, p in enumerate(shown):
        y0 = top_pad + i * row_h
        label = _e(p.get("label"))
        text = str(p.get("label"))
        short = _e(text if len(text) <= 28 else text[:27] + "…")
        star = " *" if p.get("outside_domain") else ""
        out.append(f'<text x="{label_w}" y="{y0 + row_h / 2 + 4:.1f}" font-size="13" text-anchor="end">'
                   f'<title>{label}</title>{short}{star}</text>')
        for j, stage in enumerate(("before", "after")):
            v = p.get(f"{stage}_mm")
            yb = y0 + 3 + j * (bar_h + 2)
            if not _is_number(v):
                out.append(f'<text x="{x(0) + 4:.1f}" y="{yb + bar_h - 2}" font-size="11">n/a</text>')
                continue
            w = max(x(v) - x(0), 0.8)
            colour = "#8C8C8C" if stage == "before" else (VERMILLION if _is_number(limit) and v > limit else BLUE)
            out.append(f'<rect x="{x(0):.1f}" y="{yb}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                       f'<title>{label} {stage}: {v:.2f} mm</title></rect>')
            weight = ' font-weight="700"' if stage == "after" else ' fill="#555"'
            out.append(f'<text x="{x(v) + 4:.1f}" y="{yb + bar_h - 1}" font-size="11"{weight}>{v:.2f}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{top_pad - 6}" x2="{x(0):.1f}" y2="{bottom}" stroke="#333"/>')
    if _is_number(limit):
        out.append(f'<line x1="{x(limit):.1f}" y1="{top_pad - 8}" x2="{x(limit):.1f}" y2="{bottom}" '
                   f'stroke="{VERMILLION}" stroke-width="2" stroke-dasharray="6 4"/>'
                   f'<text x="{x(limit):.1f}" y="{top_pad - 12}" font-size="12" text-anchor="middle" '
                   f'fill="{VERMILLION}">limit {limit:g} mm</text>')
    out.append("</svg>")
    note = ""
    if len(points) > len(shown):
        note = f'<p class="legend">Showing the {len(shown)} worst of {len(points)} landmarks.</p>'
    return "".join(out) + note


def jacobian_histogram_svg(edges, counts, width: int = 760, height: int = 280) -> str:
    """Histogram of the Jacobian determinant; bins reaching J ≤ 0 (folding) in vermillion; log count axis."""
    if not edges or not counts or len(edges) != len(counts) + 1:
        return ""
    edges = [float(e) for e in edges]
    counts = [max(0.0, float(c or 0)) for c in counts]
    lo, hi = edges[0], edges[-1]
    if hi <= lo:
        return ""
    left, right, top, bottom = 70, 16, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts + [1.0])
    log_peak = math.log10(1.0 + peak)

    def x(v):
        return left + plot_w * (v - lo) / (hi - lo)

    def h(c):
        return plot_h * math.log10(1.0 + c) / log_peak

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>Histogram of the Jacobian determinant; bins with J ≤ 0 '
           f'(folding) in red</title>']
    y0 = top + plot_h
    power = 0
    while 10**power <= peak:
        yy = y0 - h(10**power)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" stroke="#e3e3e3"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="12" text-anchor="end">'
                   f'{10**power:,}</text>')
        power += 1
    out.append(f'<text x="16" y="{top + plot_h / 2:.1f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + plot_h / 2:.1f})">voxels (log scale)</text>')
    folding_voxels = 0.0
    for a, b, c in zip(edges[:-1], edges[1:], counts):
        folding = a < 0.0 or b <= 0.0
        if folding:
            folding_voxels += c
        if c <= 0:
            continue
        colour = VERMILLION if folding else SKY_BLUE
        bar = h(c)
        out.append(f'<rect x="{x(a):.2f}" y="{y0 - bar:.2f}" width="{max(x(b) - x(a) - 0.5, 0.8):.2f}" '
                   f'height="{bar:.2f}" fill="{colour}"><title>J in [{a:.3g}, {b:.3g}): {c:,.0f} voxels'
                   f'</title></rect>')
    for t in _nice_ticks(lo, hi, 8):
        if lo - 1e-12 <= t <= hi + 1e-12:
            out.append(f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y0 + 5}" stroke="#333"/>'
                       f'<text x="{x(t):.1f}" y="{y0 + 19}" font-size="12" text-anchor="middle">'
                       f'{_tick_text(t)}</text>')
    out.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#333"/>')
    for ref, text in ((0.0, "J = 0"), (1.0, "J = 1")):
        if lo <= ref <= hi:
            colour = VERMILLION if ref == 0.0 else "#333"
            out.append(f'<line x1="{x(ref):.1f}" y1="{top - 6}" x2="{x(ref):.1f}" y2="{y0}" stroke="{colour}" '
                       f'stroke-dasharray="5 4" stroke-width="1.5"/>'
                       f'<text x="{x(ref):.1f}" y="{top - 10}" font-size="12" text-anchor="middle" '
                       f'fill="{colour}">{text}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="12" text-anchor="middle">'
               f'Jacobian determinant J (local volume ratio)</text></svg>')
    legend = (f'<p class="legend"><span class="key" style="background:{SKY_BLUE}"></span>J &gt; 0'
              f'<span class="key" style="background:{VERMILLION}"></span>bins reaching J ≤ 0 (folding): '
              f'{folding_voxels:,.0f} voxels</p>')
    return "".join(out) + legend


def strip_plot_svg(title: str, items, unit: str = "", higher_is_better: bool | None = None,
                   before_items=None, width: int = 560) -> str:
    """One metric across cases: per row a box (quartiles, median line) and one dot per case, linked to its report.

    ``items``: (value, case_id, verdict, href) per case; dots coloured by verdict. ``before_items`` (same form),
    when given, are drawn as a grey row above on the same axis, labelled before/after.
    """
    rows = []
    for name, source in (("before", before_items), ("after" if before_items else "", items)):
        values = [(float(v), case, verdict, href) for v, case, verdict, href in (source or []) if _is_number(v)]
        if source is not None and values:
            rows.append((name, values))
    if not rows:
        return ""
    nums_all = sorted(v for _, values in rows for v, *_ in values)
    lo, hi = nums_all[0], nums_all[-1]
    if hi - lo < 1e-12:
        pad = 0.05 * max(abs(lo), 1.0)
        lo, hi = lo - pad, hi + pad
    ticks = _nice_ticks(lo, hi, 5)
    if all(float(v).is_integer() for v in nums_all):  # counts: whole-number ticks only
        ticks = [t for t in ticks if float(t).is_integer()] or ticks
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    labelled = len(rows) > 1
    left, right, row_h, top = (58 if labelled else 20), 20, 34, 26
    plot_w = width - left - right
    axis_y = top + row_h * len(rows) + 2
    height = axis_y + 26

    def x(v):
        return left + plot_w * (v - lo) / (hi - lo)

    direction = ""
    if higher_is_better is not None:
        direction = " (higher is better)" if higher_is_better else " (lower is better)"
    unit_text = f" ({_e(unit)})" if unit else ""
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
           f'<title>{_e(title)} across cases</title>'
           f'<text x="4" y="15" font-size="13" font-weight="700">{_e(title)}{unit_text}'
           f'<tspan font-weight="400" fill="#555">{_e(direction)}</tspan></text>']
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{axis_y + 4}" stroke="#e6e6e6"/>'
                   f'<text x="{x(t):.1f}" y="{axis_y + 17}" font-size="11" text-anchor="middle">{_tick_text(t)}'
                   f'</text>')
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#333"/>')
    for r, (name, values) in enumerate(rows):
        nums = sorted(v for v, *_ in values)
        yc = top + row_h * r + row_h / 2

        def quantile(q, nums=nums):
            pos = q * (len(nums) - 1)
            i = int(math.floor(pos))
            j = min(i + 1, len(nums) - 1)
            return nums[i] + (nums[j] - nums[i]) * (pos - i)

        q1, med, q3 = quantile(0.25), quantile(0.5), quantile(0.75)
        if labelled:
            out.append(f'<text x="{left - 8}" y="{yc + 4:.1f}" font-size="12" text-anchor="end" fill="#555">'
                       f'{name}</text>')
        out.append(f'<rect x="{x(q1):.1f}" y="{yc - 11:.1f}" width="{max(x(q3) - x(q1), 1):.1f}" height="22" '
                   f'fill="#eef0f2" stroke="#777"/><line x1="{x(med):.1f}" y1="{yc - 11:.1f}" x2="{x(med):.1f}" '
                   f'y2="{yc + 11:.1f}" stroke="#333" stroke-width="2"/>')
        before_row = labelled and r == 0
        for k, (v, case, verdict, href) in enumerate(values):
            cy = yc + ((k % 5) - 2) * 2.5
            if before_row:
                shape = (f'<circle cx="{x(v):.1f}" cy="{cy:.1f}" r="4.5" fill="#fff" stroke="#6E6E6E" '
                         f'stroke-width="1.5"><title>{_e(case)} before: {v:.4g}</title></circle>')
            else:
                colour = VERDICT_COLOURS.get(verdict, GREY)
                shape = (f'<circle cx="{x(v):.1f}" cy="{cy:.1f}" r="5" fill="{colour}" stroke="#fff" '
                         f'stroke-width="1"><title>{_e(case)}: {v:.4g}</title></circle>')
            if href:
                shape = f'<a href="{_e(href)}" xlink:href="{_e(href)}">{shape}</a>'
            out.append(shape)
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------------
# The page


def _segment_name(name) -> str:
    """A segment's display name: a bare label value reads as "label 3"."""
    text = "" if name is None else str(name)
    return f"label {text}" if text.isdigit() else text


def _check_text(check: Mapping) -> str:
    name = check.get("name", "")
    title, unit, symbol = CHECK_NAMES.get(name, (name.replace("_", " "), "", ""))
    symbol = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}.get(check.get("comparison"), symbol)
    subject = check.get("subject")
    if subject and name in ("min_dice", "max_hausdorff"):
        what = f"{_e(title)} of <b>{_e(_segment_name(subject))}</b>"
    elif subject:
        what = f"{_e(title)} ({_e(subject)})"
    else:
        what = _e(title)
    value = check.get("value")
    if value is None:
        shown = "could not be computed"
    else:
        shown = f"is {_fmt(value, unit, _digits(unit))}"
    return f"{what} {shown}; required {symbol} {_fmt(check.get('limit'), unit, _digits(unit))}"


def _verdict_block(report: Mapping) -> str:
    verdict = report.get("verdict") or "no checks"
    checks = report.get("checks") or []
    failing = [c for c in checks if not c.get("passed")]
    cls = {"pass": "pass", "fail": "fail"}.get(verdict, "none")
    word = {"pass": "✔ PASS", "fail": "✘ FAIL"}.get(verdict, "NO CHECKS")
    if verdict == "pass":
        what = f"All {len(checks)} requested check{'s' if len(checks) != 1 else ''} passed."
    elif verdict == "fail":
        what = f"{len(failing)} of {len(checks)} requested check{'s' if len(checks) != 1 else ''} failed."
    else:
        what = "No pass/fail limits were requested: read the numbers below."
    has_list = verdict == "fail" and failing
    out = [f'<div class="banner {cls}{" has-list" if has_list else ""}" role="status" id="verdict">'
           f'<div class="word">{word}</div><div class="what">{_e(what)}</div></div>']
    if has_list:
        out.append('<ul class="failing">' + "".join(f"<li>{_check_text(c)}</li>" for c in failing) + "</ul>")
    return "".join(out)


def _tiles(report: Mapping) -> str:
    tiles = []
    segments = [s for s in report.get("segments") or [] if isinstance(s.get("after"), Mapping)]
    scored = [s for s in segments if _is_number(s["after"].get("dice"))]
    if scored:
        worst = min(scored, key=lambda s: s["after"]["dice"])
        before = (worst.get("before") or {}).get("dice")
        tiles.append(("Lowest Dice after", _fmt(worst["after"]["dice"], "", 3),
                      f"{_e(_segment_name(worst.get('name')))} · before {_fmt(before, '', 3)}"))
    scored = [s for s in segments if _is_number(s["after"].get("hausdorff_percentile_mm"))]
    if scored:
        worst = max(scored, key=lambda s: s["after"]["hausdorff_percentile_mm"])
        before = (worst.get("before") or {}).get("hausdorff_percentile_mm")
        p = _percentile_label(report)
        tiles.append((f"Largest HD{p} after", _fmt(worst["after"]["hausdorff_percentile_mm"], "mm", 2),
                      f"{_e(_segment_name(worst.get('name')))} · before {_fmt(before, 'mm', 2)}"))
    landmarks = report.get("landmarks") or {}
    after = landmarks.get("after") or {}
    if _is_number(after.get("mean_mm")):
        before = (landmarks.get("before") or {}).get("mean_mm")
        tiles.append(("Mean TRE after", _fmt(after["mean_mm"], "mm", 2),
                      f"max {_fmt(after.get('max_mm'), 'mm', 2)} · before: mean {_fmt(before, 'mm', 2)}"))
    jacobian = (report.get("deformation") or {}).get("jacobian") or {}
    if _is_number(jacobian.get("folding_percent")) or _is_number(jacobian.get("min")):
        tiles.append(("Folding (J ≤ 0)", _fmt(jacobian.get("folding_percent"), "%", 3),
                      f"min J {_fmt(jacobian.get('min'), '', 3)}"))
    if not tiles:
        return ""
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><div class="k">{k}</div><div class="v">{v}</div><div class="d">{d}</div></div>'
        for k, v, d in tiles) + "</div>"


def _percentile_label(report: Mapping) -> str:
    p = (report.get("options") or {}).get("percentile")
    return f"{p:g}" if _is_number(p) else "p"


def _geometry_text(geometry) -> tuple[str, str]:
    if not isinstance(geometry, Mapping):
        return "", ""
    size = geometry.get("size")
    spacing = geometry.get("spacing_mm")
    size_text = " × ".join(str(int(s)) for s in size) if isinstance(size, (list, tuple)) else _e(size)
    spacing_text = (" × ".join(f"{float(s):.3g}" for s in spacing) + " mm") if isinstance(spacing, (list, tuple)) \
        else _e(spacing)
    pixel = geometry.get("pixel_type")
    if pixel:
        size_text += f" <span class='null'>({_e(pixel)})</span>"
    return size_text, _e(spacing_text) if not isinstance(spacing, (list, tuple)) else spacing_text


INPUT_ROLES = (("fixed", "Fixed image"), ("moving", "Moving image"), ("transform", "Transform"),
               ("registered", "Registered image"), ("fixed_segmentation", "Fixed segmentation"),
               ("moving_segmentation", "Moving segmentation"), ("fixed_landmarks", "Fixed landmarks"),
               ("moving_landmarks", "Moving landmarks"))


def _inputs_section(report: Mapping) -> str:
    inputs = report.get("inputs") or {}
    rows = []
    for key, title in INPUT_ROLES:
        item = inputs.get(key)
        if not isinstance(item, Mapping):
            continue
        path = item.get("path") or item.get("node") or ""
        name = os.path.basename(str(path).rstrip("/\\")) or str(path)
        size, spacing = _geometry_text(item.get("geometry"))
        details = []
        if item.get("kind"):
            details.append(_e(item["kind"]))
        if item.get("count") is not None:
            details.append(f"{_e(item['count'])} points")
        if size:
            details.append(f"{size}; {spacing}")
        rows.append((_e(title), f'<span class="path" title="{_e(path)}">{_e(name)}</span>', "; ".join(details)))
    threshold = inputs.get("threshold")
    if threshold:
        text = ", ".join(str(t) for t in threshold) if isinstance(threshold, (list, tuple)) else str(threshold)
        rows.append(("Threshold", _e(text), "segmentations made by thresholding the images" +
                     _threshold_details(report)))
    source = report.get("segments_source")
    if source and not threshold:
        rows.append(("Segments from", _e(source), ""))
    if not rows:
        return ""
    return '<section id="inputs"><h2>Inputs</h2>' + _table(("Role", "File", "Details"), rows) + "</section>"


def _threshold_details(report: Mapping) -> str:
    """"; fixed > 38.9, moving > 15.2 (image units); clean-up: largest component, holes filled"."""
    from .segmentation import cleanup_from_dict

    entry = next((e for e in report.get("segments") or [] if isinstance(e, Mapping) and e.get("threshold")), None)
    if entry is None:
        return ""
    def g(v):
        return "?" if not _is_number(v) else f"{v:.4g}"

    parts = []
    for side in ("fixed", "moving"):
        t = entry["threshold"].get(side) or {}
        lo, hi = t.get("lower"), t.get("upper")
        if t.get("method") == "otsu" and lo is not None:
            text = f"Otsu: > {g(lo)}"
        else:
            text = " ≤ ".join([g(lo)] * (lo is not None) + ["v"] + [g(hi)] * (hi is not None))
        if t.get("volume_cc") is not None:
            text += f" ({g(t['volume_cc'])} cc; raw {g(t.get('raw_volume_cc'))} cc)"
        parts.append(f"{side} {text}")
    cleanup = entry["threshold"].get("cleanup")
    if isinstance(cleanup, Mapping):
        try:
            parts.append(f"clean-up: {cleanup_from_dict(dict(cleanup))}")
        except Exception:
            parts.append(f"clean-up: {cleanup}")
    return "; " + _e("; ".join(parts))


def _snapshots_section(report: Mapping, snapshot_relpaths, base_dir) -> str:
    snapshots = report.get("snapshots") or []
    if not snapshots:
        return ""
    out = ['<section id="snapshots"><h2>Snapshots</h2><div class="snaps">']
    for number, snap in enumerate(snapshots):
        rel = str(snap.get("file", ""))
        source = None
        if snapshot_relpaths and rel in snapshot_relpaths:
            source = snapshot_relpaths[rel]
        elif base_dir is not None:
            source = Path(base_dir) / rel
        uri = _data_uri(source) if source is not None else None
        title, caption = snap.get("title") or Path(rel).stem, snap.get("caption") or ""
        # the image is embedded; the link opens the full-size file when the page sits in its report folder
        image = (f'<a href="{_e(rel)}"><img src="{uri}" alt="{_e(title)}"></a>' if uri else
                 f'<div class="missing">image {_e(rel)} is not available</div>')
        cls = ' class="lead"' if number == 0 else ""
        out.append(f"<figure{cls}>{image}<figcaption><b>{_e(title)}</b>"
                   f"{'. ' + _e(caption) if caption else ''}</figcaption></figure>")
    out.append("</div></section>")
    return "".join(out)


def _segments_section(report: Mapping) -> str:
    segments = report.get("segments") or []
    if not segments:
        return ""
    p = _percentile_label(report)
    header = ["Segment"] + [title.format(p=p) + (f"<br><small>{unit}</small>" if unit else "") for _, title, unit, _
                            in SEGMENT_COLUMNS] + ["Volume (cc)<br><small>fixed / moving</small>", "Status"]
    rows = []
    for seg in segments:
        before = seg.get("before") if isinstance(seg.get("before"), Mapping) else {}
        after = seg.get("after") if isinstance(seg.get("after"), Mapping) else {}
        label, name = seg.get("label"), seg.get("name")
        if label is None or str(name) == str(label):
            name = _e(_segment_name(name if name is not None else label))
        else:
            name = f'{_e(name)} <span class="null">(label {_e(label)})</span>'
        cells = [name]
        for key, _title, unit, higher in SEGMENT_COLUMNS:
            cells.append(_change(before.get(key), after.get(key), higher, unit))
        volumes = (f"{_fmt(after.get('reference_volume_cc'), '', 2)} / "
                   f"{_fmt(after.get('compared_volume_cc'), '', 2)}")
        statuses = []
        for stage, values in (("before", before), ("after", after)):
            status = values.get("status")
            if status not in (None, "ok"):
                statuses.append(f'<span class="reason">{stage}: {_e(status)}</span>')
        cells += [volumes, "<br>".join(statuses) or "ok"]
        rows.append(cells)
    numeric = set(range(1, len(SEGMENT_COLUMNS) + 2))
    legend = ('<p class="legend">Each cell reads <i>before → after</i> registration. '
              '<span class="better">▲/▼ in green</span> = improved, <span class="worse">▲/▼ in orange-red</span>'
              ' = worse, — = could not be computed (reason in Status). Volumes are after registration (moving '
              'segmentation resampled onto the fixed grid). Distances are symmetric; directed values are in '
              'report.json.</p>')
    return ('<section id="segments"><h2>Segments</h2>' + _table(header, rows, numeric) + legend + "</section>")


def _landmarks_section(report: Mapping) -> str:
    landmarks = report.get("landmarks")
    if not isinstance(landmarks, Mapping):
        return ""
    before, after = landmarks.get("before") or {}, landmarks.get("after") or {}
    rows = []
    for key, title in (("mean_mm", "Mean"), ("std_mm", "Standard deviation"), ("median_mm", "Median"),
                       ("p95_mm", "95th percentile"), ("max_mm", "Maximum")):
        if key in before or key in after:
            rows.append((title, _change(before.get(key), after.get(key), False, "mm")))
    count = after.get("count", before.get("count"))
    if count is not None:
        rows.append(("Matched landmarks", _e(count)))
    out = ['<section id="landmarks"><h2>Landmarks: target registration error</h2><div class="two"><div>',
           _table(("TRE", "before → after (mm)"), rows, {1}), "</div><div>"]
    limit = (report.get("options") or {}).get("max_tre")
    chart = tre_chart_svg(landmarks.get("points") or [], limit)
    if chart:
        above = (f'<span class="key" style="background:{VERMILLION}"></span>after, above the limit'
                 if _is_number(limit) else "")
        outside = any(p.get("outside_domain") for p in landmarks.get("points") or [])
        out.append(f'<p class="legend"><span class="key" style="background:#8C8C8C"></span>before'
                   f'<span class="key" style="background:{BLUE}"></span>after registration{above}; worst first.'
                   f'{" * = outside the transform domain." if outside else ""}</p>{chart}')
    out.append("</div></div>")
    unmatched = landmarks.get("unmatched") or {}
    if isinstance(unmatched, Mapping):
        parts = [(title, unmatched.get(key) or []) for key, title in
                 (("fixed_only", "only in the fixed landmarks"), ("moving_only", "only in the moving landmarks"))]
    else:
        parts = [("unmatched", list(unmatched))]
    for title, labels in parts:
        if labels:
            out.append(f'<p class="reason">Not used ({_e(title)}): {_e(", ".join(str(v) for v in labels))}</p>')
    out.append("</section>")
    return "".join(out)


def _deformation_section(report: Mapping) -> str:
    deformation = report.get("deformation")
    if not isinstance(deformation, Mapping):
        return ""
    jac = deformation.get("jacobian") or {}
    rows = [(title, _fmt(jac.get(key), unit, _digits(unit) if unit else 3)) for key, title, unit in (
        ("min", "Minimum J", ""), ("max", "Maximum J", ""), ("mean", "Mean J", ""), ("std", "Standard deviation",
                                                                                     ""),
        ("folding_percent", "Folding (J ≤ 0)", "%"), ("folding_volume_cc", "Folding volume", "cc"),
        ("sdlogj", "SD of log J", "")) if key in jac]
    if jac.get("sdlogj_excluded_voxels"):
        rows.append(("Voxels excluded from SD log J (J ≤ 0)", _fmt(jac.get("sdlogj_excluded_voxels"))))
    displacement = deformation.get("displacement_mm") or {}
    for key, title in (("mean", "Mean displacement"), ("p95", "95th percentile displacement"),
                       ("max", "Maximum displacement")):
        if key in displacement:
            rows.append((title, _fmt(displacement.get(key), "mm", 2)))
    region = jac.get("region")
    out = ['<section id="deformation"><h2>Deformation</h2>']
    if region:
        out.append(f'<p class="sub">Region: {_e(region)}</p>')
    out.append('<div class="two"><div>' + _table(("Quantity", "Value"), rows, {1}) + "</div><div>")
    hist = deformation.get("jacobian_histogram") or {}
    out.append(jacobian_histogram_svg(hist.get("edges") or [], hist.get("counts") or []))
    out.append("</div></div></section>")
    return "".join(out)


def _similarity_section(report: Mapping) -> str:
    similarity = report.get("similarity")
    if not isinstance(similarity, Mapping):
        return ""
    before, after = similarity.get("before") or {}, similarity.get("after") or {}
    rows = [(f"{_e(title)} ({_e(key.upper())})", "higher" if higher else "lower",
             _change(before.get(key), after.get(key), higher, unit)) for key, title, higher, unit in SIMILARITY_METRICS
            if key in before or key in after]
    details = []
    if similarity.get("region"):
        details.append(f"region: {_e(similarity['region'])}")
    if similarity.get("bins"):
        details.append(f"{_e(similarity['bins'])} histogram bins for NMI")
    sub = f'<p class="sub">{"; ".join(details)}</p>' if details else ""
    return ('<section id="similarity"><h2>Image similarity</h2>' + sub +
            _table(("Metric", "Better when", "before → after"), rows, {2}) + "</section>")


def _checks_section(report: Mapping) -> str:
    checks = report.get("checks") or []
    if not checks:
        return ""
    rows = []
    for c in checks:
        name = c.get("name", "")
        title, unit, symbol = CHECK_NAMES.get(name, (name.replace("_", " "), "", ""))
        symbol = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}.get(c.get("comparison"), symbol)
        badge = '<span class="badge pass">✔ pass</span>' if c.get("passed") else \
            '<span class="badge fail">✘ fail</span>'
        subject = _segment_name(c.get("subject")) if name in ("min_dice", "max_hausdorff") else c.get("subject")
        rows.append((_e(title), _e(subject or "—"), _fmt(c.get("value"), unit, _digits(unit)),
                     f"{symbol} {_fmt(c.get('limit'), unit, _digits(unit))}", badge))
    return ('<section id="checks"><h2>Checks</h2>' +
            _table(("Check", "Subject", "Value", "Required", "Result"), rows, {2, 3}) + "</section>")


def _elastix_section(report: Mapping) -> str:
    elastix = report.get("elastix")
    if not isinstance(elastix, Mapping):
        return ""
    rows = []
    for key, title in (("version", "elastix version"), ("metric", "Metric"), ("run_time_s", "Run time")):
        if elastix.get(key) is not None:
            rows.append((title, _fmt(elastix[key], "s") if key == "run_time_s" else _e(elastix[key])))
    finals = elastix.get("final_metric_values") or []
    if finals:
        rows.append(("Final metric value per resolution",
                     "; ".join(f"{i}: {_fmt(v)}" for i, v in enumerate(finals))))
    iterations = elastix.get("iterations") or []
    if iterations:
        rows.append(("Iterations per resolution", "; ".join(f"{i}: {_fmt(v)}" for i, v in enumerate(iterations))))
    for key, value in elastix.items():
        if key in ("version", "metric", "run_time_s", "final_metric_values", "iterations", "warnings"):
            continue
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            rows.append((_e(key.replace("_", " ")), _fmt(value)))
    out = ['<section id="elastix"><h2>Registration provenance (elastix)</h2>', _table(None, rows)]
    warnings = elastix.get("warnings") or []
    if warnings:
        out.append('<h3>Warnings in the elastix log</h3><ul class="warnings">' +
                   "".join(f'<li class="reason">{_e(w)}</li>' for w in warnings) + "</ul>")
    out.append("</section>")
    return "".join(out)


def _warnings_section(report: Mapping) -> str:
    warnings = report.get("warnings") or []
    if not warnings:
        return ""
    return ('<section id="warnings"><h2>Warnings</h2><ul class="warnings">' +
            "".join(f'<li class="reason">{_e(w)}</li>' for w in warnings) + "</ul></section>")


def _options_section(report: Mapping) -> str:
    options = report.get("options") or {}
    titles = {"percentile": "Hausdorff percentile", "min_dice": "Minimum Dice", "max_hausdorff":
              "Maximum Hausdorff (mm)", "max_tre": "Maximum TRE (mm)", "max_folding": "Maximum folding (%)"}
    rows = [(_e(titles.get(k, k.replace("_", " "))), "not requested" if v is None else _fmt(v))
            for k, v in options.items()]
    if not rows:
        return ""
    return "<h3>Options</h3>" + _table(("Option", "Value"), rows, {1})


DEFINITION_TITLES = {"tre": "TRE (target registration error)", "before_after": "Before / after",
                     "ncc": "NCC", "nmi": "NMI", "mse": "MSE", "mae": "MAE", "sdlogj": "SD of log J"}


def _definition_title(key: str) -> str:
    if key in DEFINITION_TITLES:
        return DEFINITION_TITLES[key]
    for suffix in ("_mm", "_cc", "_percent"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    text = key.replace("_", " ")
    return text[:1].upper() + text[1:]


def _definitions_section(report: Mapping) -> str:
    definitions = report.get("definitions") or {}
    if not definitions:
        return ""
    items = "".join(f"<dt>{_e(_definition_title(k))}</dt><dd>{_e(v)}</dd>" for k, v in definitions.items())
    return f'<section id="definitions"><h2>Definitions</h2><dl class="defs">{items}</dl></section>'


def _software_section(report: Mapping) -> str:
    tool = report.get("tool") or {}
    rows = [(_e(k.replace("_", " ")), _e(v)) for k, v in tool.items() if v is not None]
    out = '<section id="software"><h2>Software and settings</h2><div class="two"><div>'
    if rows:
        out += "<h3>Software versions</h3>" + _table(("Component", "Version"), rows)
    return out + "</div><div>" + _options_section(report) + "</div></div></section>"


def render_html(report: Mapping, snapshot_relpaths: Mapping | None = None, base_dir=None) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources).

    ``snapshot_relpaths`` maps each ``report["snapshots"][i]["file"]`` to the image to embed (a path or the
    PNG bytes); otherwise images are looked up under ``base_dir``. Images are embedded as base64 data URIs.
    Every string from the report is HTML-escaped.
    """
    case = report.get("case_id")
    tool = report.get("tool") or {}
    title = "Registration quality report" + (f" — {case}" if case else "")
    created = report.get("created")
    sub = " · ".join(x for x in (_e(created) if created else "",
                                 f"{_e(tool.get('name', TOOL_NAME))} {_e(tool.get('version', ''))}".strip()) if x)
    body = [_verdict_block(report), _tiles(report)]
    warnings = report.get("warnings") or []
    if warnings:
        body.append(f'<p class="reason">⚠ {len(warnings)} warning{"s" if len(warnings) != 1 else ""}: see '
                    f'<a href="#warnings">Warnings</a>.</p>')
    sections = [
        ("inputs", "Inputs", _inputs_section(report)),
        ("snapshots", "Snapshots", _snapshots_section(report, snapshot_relpaths, base_dir)),
        ("checks", "Checks", _checks_section(report)),
        ("segments", "Segments", _segments_section(report)),
        ("landmarks", "Landmarks", _landmarks_section(report)),
        ("deformation", "Deformation", _deformation_section(report)),
        ("similarity", "Similarity", _similarity_section(report)),
        ("elastix", "Elastix", _elastix_section(report)),
        ("warnings", "Warnings", _warnings_section(report)),
        ("definitions", "Definitions", _definitions_section(report)),
        ("software", "Software", _software_section(report)),
    ]
    nav = " ".join(f'<a href="#{anchor}">{name}</a>' for anchor, name, content in sections if content)
    body.append(f"<nav>{nav}</nav>")
    body.extend(content for _, _, content in sections if content)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1><p class='sub'>{sub}</p>" + "".join(body) +
        f"<footer>Generated by {_e(tool.get('name', TOOL_NAME))} {_e(tool.get('version', ''))}. Numbers are in "
        "report.json and metrics.csv next to this page.</footer></main></body></html>\n"
    )


# ---------------------------------------------------------------------------------------------------------------
# Cohort summary page

VERDICT_RANK = {"fail": 1, "no checks": 2, "pass": 3}
# Known summary columns (cohort.SUMMARY_COLUMNS): title, unit, True if higher is better, the matching "before"
# column drawn in the same plot. Other numeric columns get a plot titled by their key.
SUMMARY_METRICS = {
    "min_dice_after": ("Lowest Dice", "", True, "min_dice_before"),
    "max_hausdorff_percentile_after_mm": ("Largest Hausdorff percentile", "mm", False, None),
    "mean_tre_after_mm": ("Mean TRE", "mm", False, "mean_tre_before_mm"),
    "max_tre_after_mm": ("Largest TRE after", "mm", False, None),
    "folding_percent": ("Folding (J ≤ 0)", "%", False, None),
    "sdlogj": ("SD of log J", "", False, None),
    "ncc_after": ("Normalised cross-correlation", "", True, "ncc_before"),
}
# Short table headers (the plots carry the long titles).
SUMMARY_TITLES = {"segments": "Segments", "min_dice_before": "Dice before", "min_dice_after": "Dice after",
                  "max_hausdorff_percentile_after_mm": "HD pct. after", "mean_tre_before_mm": "TRE before",
                  "mean_tre_after_mm": "TRE after", "max_tre_after_mm": "TRE max after", "folding_percent": "Folding",
                  "sdlogj": "SD log J", "ncc_before": "NCC before", "ncc_after": "NCC after"}
SUMMARY_TEXT_KEYS = ("case_id", "status", "verdict", "report", "error", "failed_checks")
SUMMARY_NOT_PLOTTED = ("segments",)


def _number(value):
    """A float from a number or numeric text (CSV cells), else None."""
    if _is_number(value):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _evaluated(row: Mapping) -> bool:
    """True when the case ran to a verdict (status "ok", "ok (earlier run)", "done", ...)."""
    status = str(row.get("status") or "").strip().lower()
    return status.startswith("ok") or status in ("done", "finished", "skipped", "")


def _case_rank(row: Mapping):
    """Sort key, worst first: cases that could not be evaluated, failing verdicts (more failed checks first),
    no checks, passes; within a group the lowest Dice after registration first (ties keep the given order)."""
    rank = VERDICT_RANK.get(row.get("verdict"), 2) if _evaluated(row) else 0
    failed_checks = _number(row.get("n_checks_failed"))
    if failed_checks is None and row.get("failed_checks"):
        failed_checks = float(len(str(row["failed_checks"]).split(";")))
    dice = _number(row.get("min_dice_after"))
    return rank, -(failed_checks or 0.0), math.inf if dice is None else dice


def summary_html(rows, output_path) -> Path:
    """Write the cohort summary page (one self-contained HTML file) and return its path.

    ``rows``: one dict per case (cohort.SUMMARY_COLUMNS): ``case_id``, ``status`` ("ok…" when the case was
    evaluated, else e.g. "failed"), ``error`` (the message of a case that failed), ``verdict`` (pass / fail / no
    checks), ``failed_checks`` (text), ``report`` (path of the case's report.html, absolute or relative to the
    page's folder) and numeric columns (numbers or numeric text; empty = not available). Every numeric column
    gets a strip plot (box = quartiles, line = median, one linked dot per case; ``*_before`` columns join their
    ``*_after`` column's plot); the table lists cases that could not be evaluated first, then failing verdicts,
    no checks, passes, the lowest Dice first within each group.
    """
    output_path = Path(os.path.abspath(os.fspath(output_path)))
    folder = output_path.parent
    rows = [dict(r) for r in rows]

    def href(row):
        target = row.get("report")
        if not target:
            return None
        target = Path(os.fspath(target))
        if target.is_absolute():
            try:
                target = Path(os.path.relpath(target, folder))
            except ValueError:  # another drive on Windows
                return target.as_uri()
        return target.as_posix()

    ordered = sorted(rows, key=_case_rank)
    columns = []
    for row in rows:
        for key, value in row.items():
            if key not in SUMMARY_TEXT_KEYS and key not in columns and _number(value) is not None:
                columns.append(key)
    counts = {"pass": 0, "fail": 0, "no checks": 0, "error": 0}
    for row in rows:
        key = (row.get("verdict") if row.get("verdict") in counts else "no checks") if _evaluated(row) else "error"
        counts[key] += 1
    tiles = "".join(
        f'<div class="tile"><div class="k">{title}</div><div class="v" style="color:{colour}">{counts[key]}</div>'
        f"</div>" for key, title, colour in (("pass", "Passed", "#00684c"), ("fail", "Failed", "#a84a00"),
                                             ("no checks", "No checks", GREY),
                                             ("error", "Could not be evaluated", "#a84a00")))

    def items(key):
        return [(_number(r.get(key)), r.get("case_id"), r.get("verdict"), href(r)) for r in rows]

    plots = []
    paired = {spec[3] for key, spec in SUMMARY_METRICS.items() if spec[3] and key in columns}
    for key in columns:
        if key in SUMMARY_NOT_PLOTTED or key in paired:
            continue
        title, unit, higher, before = SUMMARY_METRICS.get(key, (key.replace("_", " "), _unit(key), None, None))
        plots.append(strip_plot_svg(title, items(key), unit, higher, items(before) if before in columns else None))
    legend = (f'<p class="legend">Dots: <span class="key" style="background:{GREEN}"></span>pass'
              f'<span class="key" style="background:{VERMILLION}"></span>fail'
              f'<span class="key" style="background:{GREY}"></span>no checks; '
              f'<span class="key" style="background:#fff;border:1.5px solid {GREY}"></span>before registration; '
              f'box = quartiles, line = median; click a dot to open the case report.</p>')
    header = ["Case", "Result"]
    for key in columns:
        title = SUMMARY_TITLES.get(key) or SUMMARY_METRICS.get(key, (key.replace("_", " "),))[0]
        unit = SUMMARY_METRICS.get(key, ("", _unit(key)))[1]
        header.append(f'<span title="{_e(key)}">{_e(title)}</span>' + (f"<br><small>{_e(unit)}</small>" if unit
                                                                        else ""))
    table_rows = []
    for row in ordered:
        link = href(row)
        case = _e(row.get("case_id"))
        case = f'<a href="{_e(link)}">{case}</a>' if link else case
        if not _evaluated(row):
            message = row.get("error") or row.get("status") or "not evaluated"
            result = f'<span class="badge fail">error</span> <span class="reason">{_e(message)}</span>'
        else:
            verdict = row.get("verdict") or "no checks"
            cls = {"pass": "pass", "fail": "fail"}.get(verdict, "none")
            mark = {"pass": "✔ ", "fail": "✘ "}.get(verdict, "")
            result = f'<span class="badge {cls}">{mark}{_e(verdict)}</span>'
            if row.get("failed_checks"):
                result += f' <span class="reason">{_e(row["failed_checks"])}</span>'
        cells = [case, result]
        for key in columns:
            unit = SUMMARY_METRICS.get(key, ("", _unit(key)))[1]
            value = _number(row.get(key))
            if value is not None and value.is_integer() and (key.startswith("n_") or key == "segments"):
                cells.append(_fmt(int(value)))
            else:
                cells.append(_fmt(value, "", _digits(unit)))
        table_rows.append(cells)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Registration quality: cohort summary</title><style>{CSS}</style></head><body><main>"
        f"<h1>Registration quality: cohort summary</h1><p class='sub'>{len(rows)} cases</p>"
        f'<div class="tiles">{tiles}</div>'
        + ("<h2>Distributions</h2>" + legend + '<div class="plots">' + "".join(plots) + "</div>" if plots else "")
        + "<h2>Cases, worst first</h2>"
        + '<div class="cases">' + _table(header, table_rows, set(range(2, 2 + len(columns)))) + "</div>"
        + "</main></body></html>\n"
    )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = output_path.with_name(f".{output_path.name}.tmp-{secrets.token_hex(4)}")
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, output_path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return output_path


def read_metrics_csv(path) -> list[dict]:
    """Rows of a ``metrics.csv`` with ``value`` as float or None (the inverse of the writer)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["value"] = _number(row.get("value"))
    return rows

