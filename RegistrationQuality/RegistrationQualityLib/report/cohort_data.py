"""The data both cohort pages (``summary.html``, ``review.html``) embed once as JSON, and the review order.

:func:`page_data` turns summary rows (``cohort.SUMMARY_COLUMNS``, numbers or numeric text) into the JSON both
cohort pages embed once: per registration its ids, verdict, failing checks, outliers, links, which snapshot files
exist (a bit mask, so 5,000 cases cost no file names), and its numbers in the order of ``columns``; the rows come in
review order (:func:`review_order`). Pictures stay files next to the pages, loaded when shown (never base64), so
the pages stay small at any cohort size.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import measures
from ..cohort_stats import evaluated, number
from .rows import _unit

# Titles of the summary columns that are not measures of the registry.
EXTRA_TITLES = {"segments": "Segments", "method_rank": "Rank in case", "review_seconds": "Review s"}


def summary_metrics() -> dict:
    """The cohort summary's measure columns, from the measure registry (:func:`..measures.cohort_columns`):
    {column: (plot title, unit, True if higher is better (None: neither), the matching "before" column drawn in
    the same plot or None, display digits, short table header)}. Other numeric columns get a plot titled by
    their key."""
    out = {}
    columns = measures.cohort_columns()
    for column, m, stage in columns:
        if m.applies_to == "segment":
            title = f"{m.worst_word} {m.short}"
        else:
            title = _capital(m.title)
        before = next((c for c, m2, s2 in columns if m2 is m and s2 == "before"), None) if stage == "after" else None
        short = m.short if stage == "-" else f"{m.short} {stage}"
        out[column] = (title, m.unit, m.higher_is_better, before, m.digits, short)
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# Snapshot files the review page shows, by bit: the worst structure's and the whole image's before|after outline
# views, and the fixed and registered image on the same slice (flicker / fade).
SNAPSHOT_BITS = (("worst_before_after_axial.png", 1), ("before_after_axial.png", 2), ("fixed_axial.png", 4),
                 ("registered_axial.png", 8))
THUMBNAIL = "before_after_axial.png"
# Columns that are never plotted or tabled as numbers (text, or a count).
TEXT_COLUMNS = ("case_id", "method", "status", "verdict", "error", "failed_checks", "report", "worst_segment",
                "outlier_columns", "human_rating", "human_note", "reviewer", "rated_at", "rating_agrees")
NOT_PLOTTED = ("segments", "review_seconds", "method_rank")
# The review page's key figures (after registration, with the before value when there is one): declared in the
# measure registry (``Measure.review``).
FIGURES = tuple(column for m in measures.MEASURES for column in m.review)
_OUTLIER = re.compile(r"([A-Za-z0-9_.]+) \(z=")


def _digits(unit: str):
    return {"mm": 2, "cc": 3, "%": 3, "": 3}.get(unit)


def numeric_columns(rows: Sequence[Mapping]) -> list:
    """The columns holding a number in at least one row, in first-seen order."""
    columns: list = []
    for row in rows:
        for key, value in row.items():
            if key not in TEXT_COLUMNS and key not in columns and number(value) is not None:
                columns.append(key)
    return columns


def column_specs(columns: Sequence[str]) -> list:
    """Per numeric column: key, title, short title, unit, higher-is-better, paired before column, digits and
    where it is shown (``plot``, ``table``, ``figure``); titles, units and digits from the measure registry."""
    specs = summary_metrics()
    paired = {spec[3] for key, spec in specs.items() if spec[3] and key in columns}
    out = []
    for key in columns:
        title, unit, higher, before, digits, short = specs.get(
            key, (EXTRA_TITLES.get(key, key.replace("_", " ")), _unit(key), None, None, None, None))
        out.append({"key": key, "title": title, "short": short or EXTRA_TITLES.get(key, title), "unit": unit,
                    "higher": higher, "before": before if before in columns else None,
                    "digits": 0 if key in ("segments", "method_rank") else (digits if digits is not None
                                                                            else _digits(unit)),
                    "plot": key not in NOT_PLOTTED and key not in paired, "table": True,
                    "figure": key in FIGURES})
    return out


def review_group(row: Mapping) -> int:
    """0 not evaluated, 1 failing, 2 review, 3 outlier, 4 the rest."""
    if not evaluated(row):
        return 0
    verdict = row.get("verdict")
    if verdict == "fail":
        return 1
    if verdict == "review":
        return 2
    if row.get("outlier_columns"):
        return 3
    return 4


def _row_key(row: Mapping):
    dice = number(row.get("min_dice_after"))
    failed = len([c for c in str(row.get("failed_checks") or "").split(";") if c.strip()])
    return review_group(row), -failed, 2.0 if dice is None else dice


def review_order(rows: Sequence[Mapping]) -> list:
    """Row indices in review order: cases that could not be evaluated, then failing, review and outlier cases,
    then the rest (lowest Dice after registration first within a group); the registrations (methods) of one case
    stay together, in their given order, placed by their worst member."""
    by_case: dict = {}
    for i, row in enumerate(rows):
        by_case.setdefault(row.get("case_id"), []).append(i)
    cases = sorted(by_case.values(), key=lambda members: min(_row_key(rows[i]) for i in members))
    return [i for members in cases for i in members]


def _href(target, folder: Path):
    if not target:
        return None
    path = Path(os.fspath(target))
    if path.is_absolute():
        try:
            path = Path(os.path.relpath(path, folder))
        except ValueError:  # another drive on Windows
            return path.as_uri()
    return path.as_posix()


def page_data(rows: Sequence[Mapping], folder, order: Sequence[int] | None = None) -> dict:
    """The JSON both cohort pages embed (rows in ``order``, default :func:`review_order`)."""
    folder = Path(os.path.abspath(os.fspath(folder)))
    columns = numeric_columns(rows)
    order = review_order(rows) if order is None else order
    out_rows = []
    for i in order:
        row = rows[i]
        href = _href(row.get("report"), folder)
        case_dir = href.rsplit("/", 1)[0] if href and "/" in href else None
        bits = 0
        if case_dir and not case_dir.startswith("file:"):
            snaps = folder / case_dir / "snapshots"
            for name, bit in SNAPSHOT_BITS:
                if (snaps / name).is_file():
                    bits |= bit
        out = {"id": str(row.get("case_id") or ""), "m": str(row.get("method") or ""), "ev": int(evaluated(row)),
               "v": row.get("verdict") or "", "x": [number(row.get(c)) for c in columns], "img": bits}
        for key, name in (("error", "err"), ("failed_checks", "fc"), ("outlier_columns", "out"),
                          ("worst_segment", "w"), ("human_rating", "hr"), ("human_note", "hn")):
            if row.get(key):
                out[name] = str(row[key])
        if out.get("out"):
            out["outcols"] = _OUTLIER.findall(out["out"])
        if href:
            out["href"] = href
        if case_dir:
            out["dir"] = case_dir
            if bits & 2:
                out["thumb"] = f"{case_dir}/snapshots/{THUMBNAIL}"
        rank = number(row.get("method_rank"))
        if rank is not None:
            out["rk"] = rank if not rank.is_integer() else int(rank)
        if str(row.get("rating_agrees") or "") == "no":
            out["dis"] = 1
        out_rows.append(out)
    methods = len({str(r.get("method") or "") for r in rows}) > 1 or any(r.get("method") for r in rows)
    return {"folder": os.fspath(folder), "columns": column_specs(columns), "rows": out_rows,
            "methods": bool(methods), "rated": any(r.get("human_rating") for r in rows)}


def script_json(data) -> str:
    """JSON safe inside ``<script type="application/json">`` (every ``<`` escaped)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a hidden temporary renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path
